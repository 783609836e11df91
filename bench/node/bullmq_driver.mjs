// BullMQ on Node as a benchmark peer (installed into bench/node by bench/peers/setup.py).
//
//   node bullmq_driver.mjs <redis url> driver   # phases on stdin, one JSON reply per line
//   node bullmq_driver.mjs <redis url> worker   # a Worker (concurrency 2) until SIGTERM
//
// Driver commands: "enqueue N" (N awaited add calls), "bulk N" (addBulk of 5,000 jobs per call),
// "round_trip N" (add, then job.waitUntilFinished on a QueueEvents).
import readline from "node:readline";
import { Queue, QueueEvents, Worker } from "bullmq";

const QUEUE = "bench";
const PAYLOAD = { data: "x".repeat(100) };
const BULK_CHUNK = 5000;
const CONCURRENCY = 2;

function connection(url) {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port), db: Number(parsed.pathname.slice(1) || 0) };
}

async function worker(url) {
  const w = new Worker(QUEUE, async () => null, { connection: connection(url), concurrency: CONCURRENCY });
  process.on("SIGTERM", async () => { await w.close(); process.exit(0); });
}

async function driver(url) {
  const queue = new Queue(QUEUE, { connection: connection(url) });
  let events = null;
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) break;
    const [command, count] = line.trim().split(/\s+/);
    const n = Number(count);
    const reply = {};
    const started = performance.now();
    if (command === "enqueue") {
      for (let i = 0; i < n; i++) await queue.add("noop", PAYLOAD);
    } else if (command === "bulk") {
      for (let start = 0; start < n; start += BULK_CHUNK) {
        const size = Math.min(BULK_CHUNK, n - start);
        await queue.addBulk(Array.from({ length: size }, () => ({ name: "noop", data: PAYLOAD })));
      }
    } else if (command === "round_trip") {
      if (events === null) {
        events = new QueueEvents(QUEUE, { connection: connection(url) });
        await events.waitUntilReady();
      }
      const latencies = [];
      for (let i = 0; i < n; i++) {
        const began = performance.now();
        const job = await queue.add("noop", PAYLOAD);
        await job.waitUntilFinished(events, 60000);
        latencies.push(performance.now() - began);
      }
      reply.latencies_ms = latencies;
    } else {
      throw new Error(`unknown command ${command}`);
    }
    reply.elapsed_s = (performance.now() - started) / 1000;
    process.stdout.write(JSON.stringify(reply) + "\n");
  }
  if (events) await events.close();
  await queue.close();
  process.exit(0);
}

const [url, role] = process.argv.slice(2);
(role === "worker" ? worker : driver)(url);
