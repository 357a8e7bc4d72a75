"""The Redis side of the local stack: one ``redis-server``, or a local Redis Cluster.

``csync stack up`` starts one server on ``REDIS_PORT`` (:func:`start_redis`); ``csync stack up
--redis-cluster`` starts a Redis Cluster of 6 nodes (3 masters + 3 replicas,
:mod:`csync.stack_redis_cluster`) on ``REDIS_PORT`` … ``REDIS_PORT + 5`` (:func:`start_redis_nodes`)
and points ``REDIS_URL`` at all of them (``redis+cluster://…``). Only the standard library and
``redis-server``/``redis-cli`` binaries are used here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from csync.stack import ServiceInfo, StackError, _tail, _wait, say, spawn

CLUSTER_NODES = 6  # 3 masters + 3 replicas


def ensure_redis_server() -> str:
    """Path of redis-server, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise StackError("redis-server is missing and apt-get is not available: install Redis 6+")
    say("redis-server is missing: running apt-get update && apt-get install -y redis-server")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)  # noqa: S603
        if result.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    found = shutil.which("redis-server")
    if not found:
        raise StackError("apt-get installed redis-server but it is not on PATH")
    return found


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return "unknown"


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(data_root: Path, port: int, persist: bool = False) -> ServiceInfo:
    """Start redis-server on 127.0.0.1:port; no persistence unless asked (tests never persist)."""
    binary = ensure_redis_server()
    home = data_root / "redis"
    home.mkdir(parents=True, exist_ok=True)
    log = home / "redis.log"
    args = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(home),
        "--logfile",
        str(log),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    args += ["--appendonly", "yes"] if persist else ["--save", "", "--appendonly", "no"]
    say(f"starting redis-server {redis_version(binary)} on 127.0.0.1:{port}")
    proc = spawn(args)
    _wait(lambda: redis_ping(port), 20, lambda: f"redis-server did not answer:\n{_tail(log)}", proc)
    return ServiceInfo(
        "redis", proc.pid, port, f"127.0.0.1:{port}", redis_version(binary), str(home), str(log)
    )


def redis_ports(redis_port: int, cluster: bool) -> list[int]:
    """The ports the Redis side of a stack listens on: ``redis_port`` (and the next five for a
    cluster)."""
    return [redis_port + i for i in range(CLUSTER_NODES if cluster else 1)]


def start_redis_nodes(
    data_root: Path, redis_port: int, cluster: bool, persist: bool
) -> list[ServiceInfo]:
    """Start the Redis side of a stack: one server, or a formed and healthy Redis Cluster (whose
    nodes never persist: ``persist`` is for the single server)."""
    if not cluster:
        return [start_redis(data_root, redis_port, persist=persist)]
    from csync.stack_redis_cluster import start_redis_cluster  # it imports this module

    return start_redis_cluster(data_root, redis_ports(redis_port, cluster)).nodes


def redis_url_of(nodes: list[ServiceInfo]) -> str:
    """``REDIS_URL`` of the nodes :func:`start_redis_nodes` started."""
    if len(nodes) == 1:
        return f"redis://{nodes[0].address}/0"
    return "redis+cluster://" + ",".join(n.address for n in nodes)
