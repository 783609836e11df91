"""`AsyncRegistry.run_batched`: the requests of operations issued in one turn of the loop share one
pipeline, and each operation gets its own reply or error (a dedicated server: SCRIPT FLUSH)."""

from __future__ import annotations

import asyncio

import redis

from coordinator import JobQueueCoordinator, JobState
from coordinator.connection import connect_async
from coordinator.errors import RedisUnavailableError
from coordinator.registry.aio import AsyncRegistry
from coordinator.registry.ops import RegistryOps
from tests.support.servers import RedisServer

QUEUE = "batched"


def reads(client: redis.Redis) -> int:
    return int(client.info("stats")["total_reads_processed"])


def test_claims_of_one_turn_share_a_round_trip_and_keep_their_own_replies(prefix: str) -> None:
    with RedisServer() as server:
        coord = JobQueueCoordinator(server.url, prefix=prefix)
        try:
            coord.create_queue(QUEUE)
            jobs = coord.enqueue_bulk(QUEUE, [{"data": i} for i in range(20)])
            client = server.client()
            client.rpush("not-a-hash", "x")
            asyncio.run(claim_all(coord, client, [job.id for job in jobs]))
            states = {job.state for job in coord.get_jobs(QUEUE, ["active", "waiting"])}
            assert states == {JobState.ACTIVE}
        finally:
            coord.shutdown(timeout=5)


async def claim_all(coord: JobQueueCoordinator, client: redis.Redis, ids: list[str]) -> None:
    ops = RegistryOps(coord.settings.prefix)
    registry = AsyncRegistry(connect_async(coord.settings), ops)
    try:
        tokens = [int((await registry.run(ops.job_state_token(QUEUE, job_id)))[1]) for job_id in ids]

        def start(job_id: str, token: int):  # type: ignore[no-untyped-def]
            return registry.run_batched(ops.start(QUEUE, job_id, token, "w", "h", 10_000, None))

        # the scripts are not loaded: each NOSCRIPT reply is sent again (loading the script) for
        # its own operation; a stale claim and a failing command answer only their own callers
        client.script_flush()
        first = await asyncio.gather(start(ids[0], tokens[0]), start(ids[1], tokens[1] + 1),
                                     registry.run_batched(ops.hash_fields("not-a-hash", ["f"])),
                                     return_exceptions=True)
        assert first[0].status == "active" and first[0].job.id == ids[0]
        assert first[1].status == "stale"
        assert isinstance(first[2], redis.ResponseError) and "WRONGTYPE" in str(first[2])

        before = reads(client)
        rest = await asyncio.gather(*(start(job_id, token) for job_id, token in zip(ids[1:], tokens[1:])))
        assert [claim.status for claim in rest] == ["active"] * 19
        assert reads(client) - before <= 4, "19 claims of one turn: one pipeline (plus this INFO)"
    finally:
        await registry.client.aclose()


def test_a_cancelled_caller_leaves_the_others_their_replies(prefix: str) -> None:
    with RedisServer() as server:
        coord = JobQueueCoordinator(server.url, prefix=prefix)
        try:
            coord.create_queue(QUEUE)
            asyncio.run(cancel_one(coord))
        finally:
            coord.shutdown(timeout=5)


async def cancel_one(coord: JobQueueCoordinator) -> None:
    ops = RegistryOps(coord.settings.prefix)
    registry = AsyncRegistry(connect_async(coord.settings), ops)
    try:
        names = [asyncio.ensure_future(registry.run_batched(ops.queue_names())) for _ in range(3)]
        await asyncio.sleep(0)  # queued, not yet sent
        names[1].cancel()
        done = await asyncio.gather(*names, return_exceptions=True)
        assert done[0] == done[2] == [QUEUE]
        assert isinstance(done[1], asyncio.CancelledError)
    finally:
        await registry.client.aclose()


def test_redis_away_fails_every_queued_request_with_the_coordinators_error(prefix: str) -> None:
    server = RedisServer().start()
    coord = JobQueueCoordinator(server.url, prefix=prefix, socket_timeout_s=1)
    server.stop()

    async def run() -> list[object]:
        registry = AsyncRegistry(connect_async(coord.settings), RegistryOps(prefix))
        try:
            return await asyncio.gather(*(registry.run_batched(registry.ops.queue_names()) for _ in range(3)),
                                        return_exceptions=True)
        finally:
            await registry.client.aclose()

    assert all(isinstance(error, RedisUnavailableError) for error in asyncio.run(run()))
