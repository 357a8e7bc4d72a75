"""The real local stack: Apache Kafka 4 (KRaft, from Maven Central jars), redis-server, and the chDB folder.

Used by ``make up`` / ``make down`` / ``make status`` (through ``csync stack …``) and by the test session, which
starts its own stack on free ports. Only the standard library is used here, and nothing here is Docker.

Processes are started in their own session (Ctrl-C in the terminal does not reach them) and their pids are
recorded in ``<data_dir>/stack.json``; ``down`` stops exactly those pids.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from csync.settings import PROJECT_ROOT

KAFKA_DEPLOY = PROJECT_ROOT / "deploy" / "local" / "kafka"
STATE_FILE = "stack.json"
KAFKA_HEAP = "512m"
# ApiVersions keys that tell a Kafka 4.x broker apart: Kafka 4.0 removed Fetch v0–v3 (KIP-896), so its
# minimum is 4 (older brokers accept v0), and it serves the KIP-848 consumer group protocol (key 68).
# (Produce v0–v2 were removed too but are still advertised, for old clients' sake.)
API_FETCH = 1
API_VERSIONS = 18
API_CONSUMER_GROUP_HEARTBEAT = 68


class StackError(RuntimeError):
    """A service could not be installed, started or reached; the message says what to do."""


def say(message: str) -> None:
    """Progress for a person at the terminal (stderr, so stdout stays parseable)."""
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


# ---------------------------------------------------------------------------------------------------- install


def kafka_lib_dir() -> Path:
    """The jar cache, shared by every stack of this checkout (``KAFKA_LIB_DIR`` overrides)."""
    return Path(os.environ.get("KAFKA_LIB_DIR", PROJECT_ROOT / ".local" / "kafka" / "lib"))


def ensure_kafka_jars() -> Path:
    """Resolve the Kafka broker and its runtime dependencies from Maven Central, once."""
    lib = kafka_lib_dir()
    if any(lib.glob("kafka_2.13-*.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (mvn) is needed to fetch Kafka from Maven Central: apt-get install maven"
        )
    say(f"fetching Apache Kafka jars from Maven Central into {lib} (once)")
    lib.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(KAFKA_DEPLOY / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
        raise StackError(
            f"mvn failed to fetch Kafka:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return lib


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless")
    return java


# ---------------------------------------------------------------------------------------------------- Kafka


def kafka_version(lib: Path) -> str:
    """The broker version, from the jar Maven resolved (``kafka_2.13-4.1.1.jar`` → ``4.1.1``)."""
    for jar in sorted(lib.glob("kafka_2.13-*.jar")):
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return "unknown"


def api_versions(
    port: int, host: str = "127.0.0.1", timeout: float = 2.0
) -> dict[int, tuple[int, int]]:
    """Send an ApiVersions v0 request and return ``{api_key: (min_version, max_version)}``."""
    client_id = b"csync-stack"
    body = struct.pack(">hhih", API_VERSIONS, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
    _correlation, error, count = struct.unpack(">ihi", payload[:10])
    if error != 0:
        raise StackError(f"ApiVersions answered error code {error}")
    versions: dict[int, tuple[int, int]] = {}
    for i in range(count):
        key, low, high = struct.unpack(">hhh", payload[10 + 6 * i : 16 + 6 * i])
        versions[key] = (low, high)
    return versions


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def is_kafka4_api(versions: dict[int, tuple[int, int]]) -> bool:
    """True for a Kafka 4.x API version set (KIP-896 removed the oldest Produce and Fetch versions)."""
    return versions.get(API_FETCH, (0, 0))[0] >= 4 and API_CONSUMER_GROUP_HEARTBEAT in versions


def _cluster_id() -> str:
    """A random KRaft cluster id. Like Kafka's own ``Uuid.randomUuid()``, never one starting with ``-``:
    kafka-storage's argument parser would take it for an option (1 format in 64 failed that way)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class ServiceInfo:
    """A started service as recorded in stack.json."""

    name: str
    pid: int
    port: int
    address: str
    version: str
    data: str
    log: str


def kafka_jvm(java: str, lib: Path, log_dir: Path, heap: str = KAFKA_HEAP) -> list[str]:
    """The JVM command line up to the main class: fixed heap, C1 only (fast start), our log4j2 config."""
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={log_dir}",
        f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
        "-cp",
        f"{lib}/*",
    ]


def start_kafka(
    data_root: Path,
    port: int,
    controller_port: int,
    timeout_s: float = 90.0,
    extra_properties: str = "",
    format_args: tuple[str, ...] = (),
) -> ServiceInfo:
    """Format (first time) and start a single KRaft broker; return once it answers metadata requests.

    ``extra_properties`` is appended to server.properties (a later key wins: e.g. a second, secured
    listener, see :mod:`csync.stack_tls`); ``format_args`` go to ``kafka-storage format`` (e.g. SCRAM
    users with ``--add-scram``). Readiness is checked on the PLAINTEXT loopback listener ``port``."""
    lib = ensure_kafka_jars()
    java = java_binary()
    home = data_root / "kafka"
    data_dir = home / "data"
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    template = string.Template((KAFKA_DEPLOY / "server.properties").read_text())
    props = home / "server.properties"
    props.write_text(
        template.substitute(port=port, controller_port=controller_port, data_dir=data_dir)
        + extra_properties
    )
    jvm = kafka_jvm(java, lib, log_dir)
    if not (data_dir / "meta.properties").exists():
        say(f"formatting KRaft storage in {data_dir}")
        fmt = [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props)]
        fmt += format_args
        result = subprocess.run(fmt, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")
    say(f"starting Apache Kafka {kafka_version(lib)} (KRaft) on 127.0.0.1:{port}")
    stdout = (log_dir / "stdout.log").open("ab")
    proc = spawn([*jvm, "kafka.Kafka", str(props)], stdout)
    server_log = log_dir / "server.log"

    def ready() -> bool:
        if proc.poll() is not None:
            raise StackError(f"Kafka exited with {proc.returncode}:\n{_tail(server_log)}")
        try:
            return is_kafka4_api(api_versions(port)) and _metadata_ok(port)
        except (OSError, StackError, struct.error):
            return False

    _wait(ready, timeout_s, lambda: f"Kafka did not answer on {port}:\n{_tail(server_log)}", proc)
    return ServiceInfo(
        name="kafka",
        pid=proc.pid,
        port=port,
        address=f"127.0.0.1:{port}",
        version=kafka_version(lib),
        data=str(data_dir),
        log=str(server_log),
    )


def _metadata_ok(port: int) -> bool:
    """A Metadata request (all topics) answers with at least our broker: the broker serves clients."""
    return metadata_brokers(port) >= 1


def metadata_brokers(port: int) -> int:
    """How many brokers a Metadata v12 request to ``port`` lists (0 for an unexpected answer)."""
    client_id = b"csync-stack"
    # header v2: api_key, api_version, correlation_id, client_id (nullable string), tagged fields
    header = struct.pack(">hhih", 3, 12, 2, len(client_id)) + client_id + b"\x00"
    # body v12 (flexible): topics = null (compact array length 0), allow_auto_topic_creation=false,
    # include_topic_authorized_operations=false, tagged fields
    body = b"\x00" + b"\x00" + b"\x00" + b"\x00"
    request = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
    # response header v1: correlation id + tagged fields; body: throttle, brokers compact array …
    correlation = struct.unpack(">i", payload[:4])[0]
    brokers_len = payload[9] - 1  # compact array: length + 1 (one byte while < 127)
    return brokers_len if correlation == 2 else 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def spawn(args: list[str], output: IO[Any] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start a service process detached from our session (Ctrl-C in a terminal never reaches it; ``down``
    stops it by its recorded pid), with no stdin and its output to ``output`` (a log file or nothing)."""
    return subprocess.Popen(  # noqa: S603 - our own command line, never a shell
        args,
        stdout=output,
        stderr=subprocess.STDOUT if output is not subprocess.DEVNULL else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait(
    ready: Callable[[], bool],
    timeout_s: float,
    failure: Callable[[], str],
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.25)
    if proc is not None:
        _terminate(proc.pid)
    raise StackError(failure())


# ---------------------------------------------------------------------------------------------------- stack


@dataclass
class Stack:
    """The services of one stack, as recorded in ``<data_root>/stack.json``."""

    data_root: str
    kafka: ServiceInfo
    redis: ServiceInfo
    chdb_path: str
    kafka_more: list[ServiceInfo] = field(default_factory=list)
    """The other nodes of a local Kafka cluster (``--brokers 3``); ``kafka`` is node 1."""
    redis_more: list[ServiceInfo] = field(default_factory=list)
    """The other nodes of a local Redis Cluster (``--redis-cluster``); ``redis`` is node 1."""

    @property
    def kafka_nodes(self) -> list[ServiceInfo]:
        return [self.kafka, *self.kafka_more]

    @property
    def redis_nodes(self) -> list[ServiceInfo]:
        return [self.redis, *self.redis_more]

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(node.address for node in self.kafka_nodes)

    @property
    def redis_url(self) -> str:
        if self.redis_more:  # a Redis Cluster: the client starts from every node
            return "redis+cluster://" + ",".join(n.address for n in self.redis_nodes)
        return f"redis://{self.redis.address}/0"

    @property
    def clickhouse_url(self) -> str:
        return f"chdb://{self.chdb_path}"

    def env(self) -> dict[str, str]:
        """Environment variables that point every csync process at this stack."""
        env = {
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "REDIS_URL": self.redis_url,
            "CLICKHOUSE_URL": self.clickhouse_url,
        }
        if self.kafka_more:  # topics on a cluster: a copy on every node, two in sync for a write
            env["REPLICATION_FACTOR"] = str(min(3, len(self.kafka_nodes)))
            env["MIN_INSYNC_REPLICAS"] = "2"
        return env

    def save(self) -> None:
        path = Path(self.data_root) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, data_root: Path) -> Stack | None:
        path = data_root / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(
            data_root=raw["data_root"],
            kafka=ServiceInfo(**raw["kafka"]),
            redis=ServiceInfo(**raw["redis"]),
            chdb_path=raw["chdb_path"],
            kafka_more=[ServiceInfo(**node) for node in raw.get("kafka_more", [])],
            redis_more=[ServiceInfo(**node) for node in raw.get("redis_more", [])],
        )


def up(
    data_root: Path,
    kafka_port: int = 9092,
    redis_port: int = 6379,
    persist_redis: bool = True,
    brokers: int = 1,
    kafka_ports: list[int] | None = None,
    redis_cluster: bool = False,
) -> Stack:
    """Start the stack unless it already runs (idempotent); return it.

    ``brokers`` > 1 starts a KRaft cluster (:mod:`csync.stack_kafka_cluster`) on ``kafka_ports``, by default
    ``kafka_port``, ``kafka_port + 1`` …; ``redis_cluster`` a Redis Cluster of 3 masters + 3 replicas on
    ``redis_port`` … ``redis_port + 5`` instead of one redis-server (:mod:`csync.stack_redis`)."""
    from csync.stack_redis import redis_ports, start_redis_nodes  # it imports this module

    data_root.mkdir(parents=True, exist_ok=True)
    ports = kafka_ports or [kafka_port + i for i in range(brokers)]
    existing = Stack.load(data_root)
    if existing and all(pid_alive(s.pid) for s in [*existing.kafka_nodes, *existing.redis_nodes]):
        if bool(existing.redis_more) != redis_cluster:
            raise StackError(
                f"the stack already runs with Redis at {existing.redis_url}: "
                "`csync stack down` first to change how Redis runs"
            )
        say(f"already running: kafka {existing.kafka_bootstrap}, redis {existing.redis_url}")
        return existing
    if existing:
        say("a previous stack is partly down: stopping what is left, then starting again")
        down(data_root)
    redis_at = redis_ports(redis_port, redis_cluster)
    for name, port in [*(("Kafka", p) for p in ports), *(("Redis", p) for p in redis_at)]:
        if port_open(port):
            raise StackError(
                f"127.0.0.1:{port} is taken by another process; set {name.upper()}_PORT to a free port"
            )
    chdb_path = data_root / "chdb"
    chdb_path.mkdir(parents=True, exist_ok=True)
    redis = start_redis_nodes(data_root, redis_port, redis_cluster, persist=persist_redis)
    try:
        if len(ports) == 1:
            nodes = [start_kafka(data_root, ports[0], free_port())]
        else:
            from csync.stack_kafka_cluster import start_kafka_cluster  # it imports this module

            nodes = start_kafka_cluster(data_root, ports).services()
    except BaseException:
        for node in redis:
            _terminate(node.pid)
        raise
    stack = Stack(
        str(data_root), nodes[0], redis[0], str(chdb_path), kafka_more=nodes[1:],
        redis_more=redis[1:],
    )  # fmt: skip
    stack.save()
    return stack


def down(data_root: Path) -> list[str]:
    """Stop the processes recorded in stack.json; data stays. Returns what was stopped."""
    stack = Stack.load(data_root)
    if stack is None:
        return []
    stopped = []
    for service in (*stack.kafka_nodes, *stack.redis_nodes):
        if pid_alive(service.pid):
            _terminate(service.pid)
            stopped.append(f"{service.name} (pid {service.pid})")
    (data_root / STATE_FILE).unlink(missing_ok=True)
    return stopped


def status(data_root: Path) -> list[str]:
    """One line per service: up/down, address, version."""
    stack = Stack.load(data_root)
    if stack is None:
        return [
            "kafka  down",
            "redis  down",
            f"chdb   {'ready' if (data_root / 'chdb').is_dir() else 'absent'}",
        ]
    from csync.stack_redis import redis_ping  # it imports this module

    lines = [_kafka_line(node) for node in stack.kafka_nodes]
    for node in stack.redis_nodes:
        redis_up = pid_alive(node.pid) and redis_ping(node.port)
        kind = "Redis Cluster node" if stack.redis_more else "redis-server"
        lines.append(
            f"redis  {'up  ' if redis_up else 'down'}  {node.address}  {kind} {node.version}"
        )
    chdb = Path(stack.chdb_path)
    lines.append(f"chdb   {'ready' if chdb.is_dir() else 'absent'} {chdb}")
    return lines


def _kafka_line(node: ServiceInfo) -> str:
    if not pid_alive(node.pid):
        return f"kafka  down  {node.address}"
    try:
        api = "Kafka 4.x API" if is_kafka4_api(api_versions(node.port)) else "pre-4 API!"
    except OSError as exc:
        api = f"not answering ({exc})"
    return f"kafka  up    {node.address}  Apache Kafka {node.version} KRaft, {api}"


def _terminate(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
