"""A local Apache Kafka cluster of three KRaft nodes on loopback ports, for ``csync stack up --brokers 3`` and
the replication tests.

Each node runs in combined mode (broker and one of three controller voters: a controller quorum survives the
loss of any one node) from ``deploy/local/kafka/server-cluster.properties``: replication factor 3 and
``min.insync.replicas=2`` for internal topics, no unclean leader election, a dead node fenced after 6 s. Heaps
are small (``CLUSTER_HEAP``) so three JVMs start on a loaded 2-core machine; readiness is checked over the wire
(ApiVersions of a 4.x broker, then a Metadata answer that lists every node), as for the single broker.

Nodes are formatted once with one shared cluster id (``<root>/kafka-cluster/cluster-id``) and keep their data
and ports across restarts, so :func:`kill_node` / :func:`stop_node` followed by :func:`start_node` is a crash or
a rolling restart of one node.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import string
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from csync.stack import (
    KAFKA_DEPLOY,
    ServiceInfo,
    StackError,
    _cluster_id,
    _tail,
    _terminate,
    api_versions,
    ensure_kafka_jars,
    free_port,
    is_kafka4_api,
    java_binary,
    kafka_jvm,
    kafka_version,
    metadata_brokers,
    pid_alive,
    say,
    spawn,
)

CLUSTER_HEAP = "384m"
CLUSTER_STATE = "kafka-cluster.json"


@dataclass
class KafkaNode:
    """One node: its id, client and controller ports, and the running process (``pid`` 0 when stopped)."""

    node_id: int
    port: int
    controller_port: int
    pid: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class KafkaCluster:
    """The nodes of one local cluster, saved in ``<root>/kafka-cluster/kafka-cluster.json``."""

    root: str
    cluster_id: str
    nodes: list[KafkaNode] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)

    @property
    def home(self) -> Path:
        return Path(self.root) / "kafka-cluster"

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def by_port(self, port: int) -> KafkaNode:
        return next(n for n in self.nodes if n.port == port)

    def services(self) -> list[ServiceInfo]:
        """The nodes as :class:`ServiceInfo` rows (for ``stack.json`` and ``csync stack status``)."""
        version = kafka_version(ensure_kafka_jars())
        return [
            ServiceInfo(
                f"kafka-{n.node_id}",
                n.pid,
                n.port,
                n.address,
                version,
                str(self.home / f"node-{n.node_id}" / "data"),
                str(self._log(n)),
            )  # fmt: skip
            for n in self.nodes
        ]

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / CLUSTER_STATE).write_text(json.dumps(asdict(self), indent=2))

    def _log(self, node: KafkaNode) -> Path:
        return self.home / f"node-{node.node_id}" / "logs" / "server.log"


def new_cluster(root: Path, ports: list[int]) -> KafkaCluster:
    """A cluster description with client ``ports`` (one per node) and free controller ports; the saved one
    when this root already holds a cluster on those ports (its storage is formatted with its id)."""
    saved = Path(root) / "kafka-cluster" / CLUSTER_STATE
    if saved.exists():
        raw = json.loads(saved.read_text())
        nodes = [KafkaNode(**{**n, "pid": 0}) for n in raw["nodes"]]
        if [n.port for n in nodes] == ports:
            return KafkaCluster(str(root), raw["cluster_id"], nodes)
        raise StackError(
            f"{saved} holds a cluster on ports {[n.port for n in nodes]}: use them, or make clean"
        )
    nodes = [KafkaNode(i + 1, port, free_port()) for i, port in enumerate(ports)]
    return KafkaCluster(str(root), _cluster_id(), nodes)


def _write_config(cluster: KafkaCluster, node: KafkaNode) -> tuple[Path, list[str]]:
    """server.properties of ``node`` and its JVM command line (formatting its storage the first time)."""
    lib = ensure_kafka_jars()
    home = cluster.home / f"node-{node.node_id}"
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster.nodes)
    template = string.Template((KAFKA_DEPLOY / "server-cluster.properties").read_text())
    props = home / "server.properties"
    props.write_text(
        template.substitute(
            node_id=node.node_id,
            voters=voters,
            port=node.port,
            controller_port=node.controller_port,
            data_dir=home / "data",
        )  # fmt: skip
    )
    jvm = kafka_jvm(java_binary(), lib, log_dir, heap=CLUSTER_HEAP)
    if not (home / "data" / "meta.properties").exists():
        fmt = [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster.cluster_id,
            "-c",
            str(props),
        ]
        result = subprocess.run(fmt, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")
    return props, jvm


def launch_node(cluster: KafkaCluster, node: KafkaNode) -> None:
    """Start ``node``'s process (no wait: a lone combined node cannot serve until a quorum forms)."""
    props, jvm = _write_config(cluster, node)
    stdout = (props.parent / "logs" / "stdout.log").open("ab")
    proc = spawn([*jvm, "kafka.Kafka", str(props)], stdout)
    node.pid = proc.pid
    cluster.save()


def node_ready(node: KafkaNode, brokers: int) -> bool:
    """``node`` answers as a Kafka 4.x broker and its metadata lists ``brokers`` live brokers."""
    try:
        return is_kafka4_api(api_versions(node.port)) and metadata_brokers(node.port) >= brokers
    except (OSError, StackError, IndexError, ValueError):
        return False


def wait_ready(cluster: KafkaCluster, nodes: list[KafkaNode], timeout_s: float = 180.0) -> float:
    """Seconds until every one of ``nodes`` is ready and sees every running node of the cluster."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        for node in nodes:
            if not pid_alive(node.pid):
                raise StackError(f"Kafka node {node.node_id} exited:\n{_tail(cluster._log(node))}")
        running = sum(1 for n in cluster.nodes if n.pid and pid_alive(n.pid))
        if all(node_ready(n, running) for n in nodes):
            return time.monotonic() - started
        time.sleep(0.25)
    raise StackError(
        f"Kafka nodes {[n.node_id for n in nodes]} not ready after {timeout_s:.0f}s:\n"
        f"{_tail(cluster._log(nodes[0]))}"
    )


def start_kafka_cluster(root: Path, ports: list[int], timeout_s: float = 240.0) -> KafkaCluster:
    """Format (first time) and start ``len(ports)`` nodes; return once each serves and sees all."""
    cluster = new_cluster(root, ports)
    say(f"starting Apache Kafka, {len(ports)} KRaft nodes on 127.0.0.1:{','.join(map(str, ports))}")
    try:
        for node in cluster.nodes:
            launch_node(cluster, node)
        wait_ready(cluster, cluster.nodes, timeout_s)
    except BaseException:
        stop_kafka_cluster(cluster)
        raise
    return cluster


def start_node(cluster: KafkaCluster, node_id: int, timeout_s: float = 180.0) -> float:
    """Start a stopped node on its ports and data; the seconds until it serves and sees every node."""
    node = cluster.node(node_id)
    launch_node(cluster, node)
    return wait_ready(cluster, [node], timeout_s)


def kill_node(cluster: KafkaCluster, node_id: int) -> None:
    """``kill -9`` one node: no controlled shutdown, leadership moves only once it is fenced."""
    node = cluster.node(node_id)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(node.pid, 0)
    node.pid = 0
    cluster.save()


def stop_node(cluster: KafkaCluster, node_id: int) -> float:
    """SIGTERM one node (controlled shutdown: it hands its leaderships over first); seconds it took."""
    node = cluster.node(node_id)
    started = time.monotonic()
    _terminate(node.pid, grace_s=60.0)
    node.pid = 0
    cluster.save()
    return time.monotonic() - started


def stop_kafka_cluster(cluster: KafkaCluster) -> None:
    for node in cluster.nodes:
        if node.pid and pid_alive(node.pid):
            _terminate(node.pid)
        node.pid = 0
