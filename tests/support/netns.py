"""Worker "hosts" as Linux network namespaces joined to this machine by veth pairs, for the
partition test and the many-hosts benchmark. Addresses come from 10.231.0.0/16, and only the
namespaces, links and addresses created here are ever touched (and always removed again).

Each host also gets its own UTS namespace (`unshare --uts`) so its processes report their own
host name, as on separate machines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence


#: The private range the test hosts get their /24s from.
SUBNET = "10.231"


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "`ip` (iproute2) or `unshare` is not installed"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is not available"
    return None


def require_netns() -> None:
    """Skip without namespaces, except in CI (CI=true), where a missing capability is a failure."""
    from tests.support.needs import skip_or_fail

    skip_or_fail(netns_unavailable())


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


def _used_subnets() -> set[int]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used = set()
    for word in out.split():
        if word.startswith(SUBNET + "."):
            used.add(int(word.split(".")[2]))
    return used


class NetnsHost:
    """One namespace: a veth pair, host end ``host_ip`` (where Redis listens), namespace end ``ns_ip``."""

    def __init__(self, tag: str, index: int, octet: int) -> None:
        self.ns = f"jqc{tag}h{index}"
        self.veth_host = f"jq{tag}h{index}"
        self.veth_ns = f"jq{tag}n{index}"
        self.hostname = f"jqc-host-{index}"
        self.host_ip = f"{SUBNET}.{octet}.1"
        self.ns_ip = f"{SUBNET}.{octet}.2"
        self.created = False

    def create(self) -> None:
        self.created = True
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        _ip("link", "set", self.veth_ns, "netns", self.ns)
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        _ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/24", "dev", self.veth_ns)
        _ip("-n", self.ns, "link", "set", self.veth_ns, "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")

    def cut(self) -> None:
        """Pull the host's cable: nothing gets through, no connection is reset."""
        _ip("link", "set", self.veth_host, "down")

    def restore(self) -> None:
        _ip("link", "set", self.veth_host, "up")

    def reaches(self, port: int, timeout_s: float = 2.0) -> bool:
        """Whether a TCP connection from inside the namespace to ``host_ip:port`` succeeds."""
        probe = (f"import socket; socket.create_connection(({self.host_ip!r}, {port}), timeout={timeout_s}).close()")
        return subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", probe], capture_output=True,
                              timeout=timeout_s + 30).returncode == 0

    def popen(self, command: Sequence[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Run ``command`` inside the namespace, under the host's own name, in a new session."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
             self.hostname, *command],
            env=env, start_new_session=True, **kwargs,  # type: ignore[arg-type]
        )

    def delete(self) -> None:
        if not self.created:
            return
        _ip("netns", "del", self.ns, check=False)  # takes its veth end, and so the pair, with it
        _ip("link", "del", self.veth_host, check=False)


class NetnsHosts:
    """Several test hosts, created together and always removed together."""

    def __init__(self, count: int) -> None:
        tag = f"{os.getpid() % 100000:05d}"
        used = _used_subnets()
        octets = [o for o in range(10, 250) if o not in used][:count]
        self.hosts = [NetnsHost(tag, i + 1, octet) for i, octet in enumerate(octets)]

    def __enter__(self) -> list[NetnsHost]:
        try:
            for host in self.hosts:
                host.create()
        except BaseException:
            self.__exit__()
            raise
        return self.hosts

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts:
            host.delete()
