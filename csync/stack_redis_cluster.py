"""A local Redis Cluster of real ``redis-server`` processes: 3 masters + 3 replicas on loopback ports.

Started as production would form one: every node with ``--cluster-enabled yes`` (its own
``nodes.conf`` under ``<root>/redis-cluster/<port>/``), then ``redis-cli --cluster create … --cluster-replicas
1``. ``cluster-node-timeout`` is short (2 s) so a killed master's replica takes over within seconds; nothing is
persisted (as the tests' single server). Used by ``csync stack up --redis-cluster`` and by the tests
(``REDIS_URL=redis+cluster://…``, see :mod:`csync.redis_client`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from csync.stack import (
    ServiceInfo,
    StackError,
    _tail,
    _terminate,
    _wait,
    free_port,
    pid_alive,
    say,
    spawn,
)
from csync.stack_redis import ensure_redis_server, redis_ping, redis_version

NODE_TIMEOUT_MS = 2000


@dataclass
class RedisClusterInfo:
    """The nodes of one local cluster (``nodes[i].port``), all started by us."""

    root: str
    nodes: list[ServiceInfo] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def node(self, port: int) -> ServiceInfo:
        return next(n for n in self.nodes if n.port == port)


def command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One inline command to the node on ``port``; the raw RESP reply as text."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall((" ".join(args) + "\r\n").encode())
        chunks = b""
        sock.settimeout(timeout)
        while True:
            chunk = sock.recv(65536)
            chunks += chunk
            if not chunk or _complete(chunks):
                return chunks.decode(errors="replace")


def _complete(reply: bytes) -> bool:
    if reply.startswith((b"+", b"-", b":")):
        return reply.endswith(b"\r\n")
    if reply.startswith(b"$"):
        head, _, rest = reply.partition(b"\r\n")
        return int(head[1:]) < 0 or len(rest) >= int(head[1:]) + 2
    return reply.endswith(b"\r\n")


def cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of one node as a dict (empty if it does not answer)."""
    try:
        text = command(port, "CLUSTER", "INFO")
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def masters(port: int) -> dict[int, list[int]]:
    """``{master port: [replica ports]}`` as the node on ``port`` sees the cluster (live nodes only)."""
    text = command(port, "CLUSTER", "NODES")
    lines = [line.split() for line in text.splitlines() if "@" in line]
    by_id = {parts[0]: int(parts[1].split("@")[0].rsplit(":", 1)[1]) for parts in lines}
    out: dict[int, list[int]] = {}
    for parts in lines:
        flags = parts[2].split(",")
        if "fail" in flags or "fail?" in flags:
            continue
        if "master" in flags and len(parts) > 8:  # a master that serves slots
            out.setdefault(by_id[parts[0]], [])
    for parts in lines:
        flags = parts[2].split(",")
        if "slave" in flags and "fail" not in flags and by_id.get(parts[3]) in out:
            out[by_id[parts[3]]].append(by_id[parts[0]])
    return out


def start_node(root: Path, port: int) -> ServiceInfo:
    """Start (or restart, keeping its ``nodes.conf``) one cluster node on 127.0.0.1:port.

    Its cluster bus port is chosen free once and kept in ``bus-port`` beside the data (Redis's default,
    port + 10000, is often taken or out of range for the ephemeral ports the tests use)."""
    binary = ensure_redis_server()
    home = root / "redis-cluster" / str(port)
    home.mkdir(parents=True, exist_ok=True)
    bus_file = home / "bus-port"
    if not bus_file.exists():
        bus_file.write_text(str(free_port()))
    bus_port = int(bus_file.read_text())
    log = home / "redis.log"
    args = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(home),
        "--logfile", str(log), "--daemonize", "no", "--protected-mode", "yes",
        "--cluster-enabled", "yes", "--cluster-config-file", str(home / "nodes.conf"),
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-port", str(bus_port), "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    proc = spawn(args)
    _wait(lambda: redis_ping(port), 20, lambda: f"redis-server did not answer:\n{_tail(log)}", proc)
    return ServiceInfo(
        "redis-cluster", proc.pid, port, f"127.0.0.1:{port}", redis_version(binary), str(home),
        str(log),
    )  # fmt: skip


def start_redis_cluster(root: Path, ports: list[int], timeout_s: float = 60.0) -> RedisClusterInfo:
    """Start ``len(ports)`` nodes (6: 3 masters + 3 replicas) and form the cluster; return once every
    node says ``cluster_state:ok`` and every master has a replica in sync."""
    if len(ports) % 2 or len(ports) < 6:
        raise StackError("a Redis Cluster here has 3+ masters with one replica each: give 6+ ports")
    cli = shutil.which("redis-cli")
    if cli is None:
        raise StackError("redis-cli is missing: apt-get install redis-tools")
    cluster = RedisClusterInfo(str(root))
    say(f"starting a Redis Cluster of {len(ports)} nodes on 127.0.0.1:{ports[0]}…")
    try:
        cluster.nodes = [start_node(root, port) for port in ports]
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                  "--cluster-replicas", "1", "--cluster-yes"]  # fmt: skip
        result = subprocess.run(create, capture_output=True, text=True, check=False, timeout=60)  # noqa: S603
        if result.returncode != 0:
            raise StackError(f"redis-cli --cluster create failed:\n{result.stdout[-2000:]}")
        wait_healthy(cluster, len(ports) // 2, timeout_s)
    except BaseException:
        stop_redis_cluster(cluster)
        raise
    return cluster


def healthy(cluster: RedisClusterInfo, want_masters: int) -> bool:
    """Every live node sees ``cluster_state:ok``; ``want_masters`` masters, each with a replica in sync."""
    live = [n.port for n in cluster.nodes if pid_alive(n.pid)]
    if not live or any(cluster_info(p).get("cluster_state") != "ok" for p in live):
        return False
    try:
        seen = masters(live[0])
    except OSError:
        return False
    if len(seen) != want_masters or not all(seen.values()):
        return False
    return all(_replica_in_sync(r) for replicas in seen.values() for r in replicas)


def _replica_in_sync(port: int) -> bool:
    try:
        text = command(port, "INFO", "replication")
    except OSError:
        return False
    return "master_link_status:up" in text


def wait_healthy(
    cluster: RedisClusterInfo, want_masters: int = 3, timeout_s: float = 60.0
) -> float:
    """Seconds until :func:`healthy` holds (a clear error after ``timeout_s``)."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if healthy(cluster, want_masters):
            return time.monotonic() - started
        time.sleep(0.2)
    raise StackError(
        f"the Redis Cluster did not become healthy:\n{_tail(Path(cluster.nodes[0].log))}"
    )


def kill_node(cluster: RedisClusterInfo, port: int) -> None:
    """``kill -9`` one node (a crash: no failover handshake)."""
    pid = cluster.node(port).pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def restart_node(cluster: RedisClusterInfo, port: int) -> None:
    """Start a stopped node again with its ``nodes.conf``: it rejoins (as a replica if it was failed over)."""
    fresh = start_node(Path(cluster.root), port)
    cluster.nodes = [fresh if n.port == port else n for n in cluster.nodes]


def stop_redis_cluster(cluster: RedisClusterInfo) -> None:
    for node in cluster.nodes:
        if pid_alive(node.pid):
            _terminate(node.pid)
