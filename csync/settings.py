"""One settings object for every process, parsed once at start and passed explicitly.

Every field reads an environment variable of the same name in upper case (``kafka_bootstrap`` ←
``KAFKA_BOOTSTRAP``). Defaults are the contract's defaults (docs/contract.md); the README, the demo and the tests
use them. Nothing here is read at import time: call :func:`Settings.from_env` in ``main`` (a ``csync`` command
takes its settings from :mod:`csync.config`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from schemas.clock import DAY_MS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SYSTEM_DATA_DIR = Path("/var/lib/classroomsync")
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def is_source_checkout(root: Path = PROJECT_ROOT) -> bool:
    """True when the code runs from a source checkout (an editable install or ``python -m`` in the repo),
    not from an installed wheel (whose parent folder is ``site-packages``)."""
    return (root / "pyproject.toml").is_file() and root.name != "site-packages"


def default_data_dir(env: Mapping[str, str] | None = None, root: Path = PROJECT_ROOT) -> str:
    """Where local state lives when ``DATA_DIR`` is not set — never inside the installed package:

    - a source checkout: ``<checkout>/.local`` (what ``make up`` and the tests use);
    - installed, as root (a service, an image): ``/var/lib/classroomsync``;
    - installed, as a user: ``$XDG_STATE_HOME/classroomsync`` (default ``~/.local/state/classroomsync``).
    """
    env = os.environ if env is None else env
    if is_source_checkout(root):
        return str(root / ".local")
    if os.geteuid() == 0:
        return str(SYSTEM_DATA_DIR)
    state_home = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME") or Path.home()) / ".local" / "state"
    )
    return str(Path(state_home) / "classroomsync")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of every ClassroomSync process."""

    # --- where the services are
    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding the teacher presence view (CONTRACT §4); ``rediss://`` for TLS. A password may be
    in the URL or, better, in ``REDIS_PASSWORD_FILE``."""
    clickhouse_url: str = ""
    """``chdb:///abs/path`` (embedded engine) or ``http(s)://user:password@host:port`` (a server);
    empty = ``chdb://{DATA_DIR}/chdb``."""

    # --- security of the connections (one set for every Kafka client the project creates)
    kafka_security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``."""
    kafka_sasl_mechanism: str = ""
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (required with a ``SASL_*`` protocol)."""
    kafka_sasl_username: str = ""
    """SASL user name."""
    kafka_sasl_password: str = field(default="", repr=False)
    """SASL password (prefer ``KAFKA_SASL_PASSWORD_FILE``: an environment variable shows in ``ps e``)."""
    kafka_sasl_password_file: str = ""
    """File holding the SASL password (a mounted Secret); wins over ``KAFKA_SASL_PASSWORD``."""
    kafka_ssl_cafile: str = ""
    """PEM CA bundle that signed the brokers' certificates; empty = the system's trust store."""
    kafka_ssl_certfile: str = ""
    """PEM client certificate (mutual TLS); empty = none."""
    kafka_ssl_keyfile: str = ""
    """PEM private key of ``KAFKA_SSL_CERTFILE``."""
    kafka_ssl_check_hostname: bool = True
    """Check that a broker's certificate names the host connected to (leave on in production)."""
    redis_password_file: str = ""
    """File holding the Redis password (``AUTH``); wins over a password in ``REDIS_URL``."""
    redis_username: str = ""
    """Redis ACL user (Redis 6+); empty = ``default``."""
    redis_ssl_cafile: str = ""
    """PEM CA bundle for ``rediss://``; empty = the system's trust store."""
    redis_ssl_certfile: str = ""
    """PEM client certificate for ``rediss://`` (mutual TLS); empty = none."""
    redis_ssl_keyfile: str = ""
    """PEM private key of ``REDIS_SSL_CERTFILE``."""
    clickhouse_database: str = "usage"
    """ClickHouse database of the usage rollups (CONTRACT §5)."""

    # --- topics (CONTRACT §1); internal ones are ours to name
    topic_activity: str = "device-activity.v1"
    """Raw device activity events and envelopes."""
    topic_roster: str = "roster.v1"
    """Compacted roster records keyed ``{district_id}:{student_id}``."""
    topic_dlq: str = "device-activity.dlq.v1"
    """Rejected input with the reason in headers."""
    topic_presence: str = "cs-presence-changes.v1"
    """Internal, compacted: presence as a teacher sees it, per student, emitted only on change."""
    topic_usage_cells: str = "cs-usage-cells.v1"
    """Internal: de-identified partial usage cells leaving the workers."""
    partitions: int = 8
    """Partitions of the activity, roster and internal topics."""
    replication_factor: int = 1
    """Replication factor of every topic we create."""
    min_insync_replicas: int = 1
    """``min.insync.replicas`` of every topic we create when ``REPLICATION_FACTOR`` > 1: an ``acks=all``
    write succeeds only once this many copies hold it (2 of 3: one node may be lost without losing data)."""

    # --- retention (privacy policy: strict limits on data retention)
    retention_activity_ms: int = 7 * DAY_MS
    """Raw activity topic retention."""
    retention_dlq_ms: int = 7 * DAY_MS
    """DLQ retention: rejected raw input rests here only this long."""
    retention_presence_ms: int = 1 * DAY_MS
    """Retention of the internal presence-change topic (compacted and deleted)."""
    retention_usage_cells_ms: int = 7 * DAY_MS
    """Retention of the internal de-identified usage-cell topic."""
    presence_ttl_s: int = 24 * 3600
    """TTL of every Redis presence hash, refreshed on each write."""
    usage_ttl_days: int = 730
    """TTL of usage rollup rows in ClickHouse."""

    # --- the contract's rule parameters
    presence_timeout_s: int = 60
    """A student is online while their latest active event is at most this old (worker clock)."""
    max_gap_s: int = 60
    """An active event attributes at most this much time."""
    allowed_lateness_s: int = 60
    """Events later than this behind their device's newest event attribute nothing."""
    max_event_age_h: int = 72
    """Events older than this are rejected."""
    max_future_s: int = 300
    """Events further than this in the future are rejected."""
    k_anonymity: int = 10
    """Minimum distinct students for a cell to appear in the analysts' view."""
    key_prefix: str = "cs"
    """Prefix of every Redis key."""

    # --- processes
    worker_web_host: str = "127.0.0.1"
    """Bind address of the worker's web server (/metrics, /healthz)."""
    worker_web_port: int = 6066
    """Port of the worker's web server; each worker on a host needs its own."""
    metrics_port: int = 9464
    """Port of /metrics for sinks and other long-running processes."""
    collector_host: str = "127.0.0.1"
    """Bind address of the device collector."""
    collector_port: int = 8080
    """Port of the device collector."""
    collector_reuse_port: bool = False
    """Bind the devices' port with ``SO_REUSEPORT``, so several collector processes on one host share
    it (the kernel spreads connections over them). Each process needs its own
    ``COLLECTOR_METRICS_PORT``; ``COLLECTOR_TOKEN_RATE`` and ``COLLECTOR_MAX_IN_FLIGHT`` apply per process."""
    collector_metrics_host: str = "127.0.0.1"
    """Bind address of the collector's /metrics, /healthz, /readyz (``0.0.0.0`` in a pod)."""
    collector_metrics_port: int = 9469
    """Port of the collector's /metrics, /healthz, /readyz (never on the devices' port)."""
    tokens_dir: str = ""
    """The token store: ``collector_tokens.json`` and ``teacher_tokens.json`` (hashes only) live here, e.g.
    a mounted Secret with those two keys; empty = ``DATA_DIR``. See :mod:`csync.tokens`."""
    token_reload_s: float = 1.0
    """How often a running process looks at its token file for changes (a revoked token is refused
    within about this long, plus the kubelet's Secret sync delay in a pod)."""
    collector_tokens_file: str = ""
    """JSON ``{"sha256:<hex of token>": district_id}`` of device bearer tokens; empty =
    ``{TOKENS_DIR}/collector_tokens.json``. The token decides the district."""
    collector_max_body_bytes: int = 1024 * 1024
    """Largest request body the collector accepts, after gzip decoding (413 beyond)."""
    collector_max_events: int = 1000
    """Most events in one collector request (413 beyond)."""
    collector_token_rate: float = 5000.0
    """Events per second one token may send on average (429 + Retry-After beyond)."""
    collector_max_in_flight: int = 100_000
    """Events the collector may hold waiting for Kafka's ack (503 + Retry-After beyond)."""
    collector_linger_ms: int = 5
    """How long the collector gathers events of all requests into per-partition envelopes."""
    data_dir: str = field(default_factory=default_data_dir)
    """Local state: service data, key files, audit log (see :func:`default_data_dir`; an image sets
    ``/var/lib/classroomsync``, its one volume)."""

    # --- stream workers (streams/)
    topic_worker_state: str = "cs-worker-state.v1"
    """Internal: per-partition batch intents and state snapshots of the workers (crash safety)."""
    topic_day_keys: str = "cs-day-keys.v1"
    """Internal, compacted: daily student-token keys, tombstoned once the day can get no more events."""
    worker_group: str = "csync-worker"
    """Consumer group of the stream workers."""
    usage_close_after_s: int = 120
    """A device's last event is finalised after this long without an arrival from it (worker clock)."""
    usage_evict_after_s: int = 3600
    """A device's usage state is forgotten after this long without an arrival (bounded memory)."""
    worker_batch_max: int = 5000
    """Most records fetched per poll (envelopes count as one)."""
    worker_batch_ms: int = 200
    """Longest wait for records per poll; also the timer resolution of presence timeouts."""
    worker_snapshot_s: int = 5
    """Seconds between snapshots of a partition's state (bounds replay after a crash)."""
    worker_linger_ms: int = 5
    """Producer linger of the workers."""
    worker_fetch_bytes: int = 8 * 1024 * 1024
    """Max bytes fetched per partition per poll."""
    worker_fetch_wait_ms: int = 20
    """Longest time the broker holds a worker's fetch request while none of its partitions has new
    records. The client keeps one fetch in flight per broker, and a partition drained by a poll joins only
    the next one, so this bounds how long new events of that partition wait unseen (the client's default,
    500 ms, showed as polls of 200–300 ms and presence latency near 1 s at 5k events/s)."""
    worker_dlq_max_ratio: float = 0.5
    """A worker stops (DlqRateExceeded, exit status 1) when more than this share of the last
    ``WORKER_DLQ_WINDOW`` events of one partition were invalid: a bug upstream or in the worker,
    stopped loudly instead of emptying the stream into the DLQ."""
    worker_dlq_window: int = 1000
    """Events of one partition over which ``WORKER_DLQ_MAX_RATIO`` is judged (not before this many
    were seen)."""
    worker_dlq_max_consecutive: int = 200
    """A worker also stops when this many invalid events of one partition came without a valid one
    in between (counted per batch: a batch with a valid event ends the run). This is what stops a
    flood early: the ratio needs a full window of one partition first."""
    worker_commit_interval_s: float = 1.0
    """How often a worker commits its group offsets (just past the last batch whose outputs Kafka
    acknowledged), for lag monitoring; recovery never reads them."""
    presence_ts_refresh_s: int = 30
    """A presence ``ts`` that changed without a visible change is emitted at most this often per
    student (batch clock); visible changes and going offline are emitted at once."""

    # --- sinks (sinks/)
    sink_clickhouse_metrics_host: str = "127.0.0.1"
    """Bind address of /metrics, /healthz, /readyz of ``csync sink clickhouse`` (``0.0.0.0`` in a pod)."""
    sink_clickhouse_metrics_port: int = 9465
    """Port of /metrics of ``csync sink clickhouse``."""
    sink_redis_metrics_host: str = "127.0.0.1"
    """Bind address of /metrics, /healthz, /readyz of ``csync sink redis`` (``0.0.0.0`` in a pod)."""
    sink_redis_metrics_port: int = 9466
    """Port of /metrics of ``csync sink redis``."""
    usage_read_host: str = "127.0.0.1"
    """Bind address of the ClickHouse sink's read-only endpoint for ``csync usage``."""
    usage_read_port: int = 9467
    """Port of the ClickHouse sink's read-only endpoint for ``csync usage`` (public view only)."""
    sink_flush_interval_s: float = 1.0
    """The ClickHouse sink flushes its batch at least this often (about one insert per second)."""
    sink_redis_flush_interval_s: float = 0.1
    """The Redis sink flushes at least this often, and at once whenever its consumer has nothing more
    buffered (a pipeline is cheap; a teacher waits for it)."""
    sink_max_batch: int = 5000
    """A sink flushes early once it holds this many input records."""
    sink_fetch_wait_ms: int = 20
    """Longest time the broker holds a sink's fetch request while none of its partitions has new records
    (see ``WORKER_FETCH_WAIT_MS``: the same wait, between a presence change and the Redis sink)."""
    sink_group_clickhouse: str = "csync-sink-clickhouse"
    """Kafka consumer group of the ClickHouse sink."""
    sink_group_redis: str = "csync-sink-redis"
    """Kafka consumer group of the Redis sink."""
    sink_fault_injection: str = ""
    """TESTS ONLY: e.g. ``fail_inserts=3,crash_after_insert=1,slow_insert_ms=200``; empty in production."""

    # --- operations (ops/)
    lag_metrics_host: str = "127.0.0.1"
    """Bind address of ``csync lag serve`` (``0.0.0.0`` in a pod)."""
    lag_metrics_port: int = 9468
    """Port of /metrics, /healthz, /readyz of ``csync lag serve`` (127.0.0.1; 0 = pick a free one, logged)."""
    lag_group_prefix: str = "csync-"
    """``csync lag`` watches the consumer groups whose id starts with this (worker, faust app, sinks)."""
    lag_sample_interval_s: float = 5.0
    """Seconds between two samples of committed and end offsets."""
    lag_window: int = 10
    """Burrow's sliding window: commits kept per partition for the status rules (10 × interval)."""
    lag_min_span_s: float = 10.0
    """A partition with lag gets a status only after the monitor watched it this long (several commit
    intervals; before that ``csync lag`` says n/a): STOP, STALL and WARN need that much evidence."""
    lag_noise_s: float = 2.0
    """WARN needs the lag to grow, over the window, by more than this many seconds of input (not jitter)."""
    lag_table_points: int = 60
    """Points (end offset, wall time) kept per partition to interpolate time lag (kafka-lag-exporter)."""

    # --- privacy operations (privacy/)
    teacher_api_host: str = "127.0.0.1"
    """Bind address of ``csync teacher-api`` (the teacher presence view)."""
    teacher_api_port: int = 8090
    """Port of ``csync teacher-api``."""
    teacher_tokens_path: str = ""
    """JSON file of teacher tokens (SHA-256 hashes only); empty = ``{TOKENS_DIR}/teacher_tokens.json``."""
    teacher_stream_poll_s: float = 1.0
    """How often the live teacher view (SSE) re-reads a class from Redis (the page promises a change
    within 2 s: one poll plus the Redis sink's flush)."""
    teacher_session_ttl_s: int = 8 * 3600
    """Lifetime of a teacher page session (HttpOnly cookie) from sign-in: one school day at most."""
    teacher_sessions_path: str = ""
    """Sessions of the teacher page (hashes only, survives an API restart); empty =
    ``{DATA_DIR}/teacher_sessions.json``."""
    teacher_sign_in_code_ttl_s: int = 600
    """A one-time sign-in code (``POST /v1/sign-in-codes``) is accepted once within this many seconds."""
    monitoring_days: str = "mon-fri"
    """School days on which teacher views show anything (``mon-fri``, ``mon,wed,fri``, ``mon-sun``)."""
    monitoring_hours: str = "07:00-17:00"
    """Hours of those days, local time, comma separated ranges (``07:30-12:00,12:30-15:30``;
    ``00:00-24:00`` = all day). Outside them the teacher API reads nothing from Redis."""
    monitoring_timezone: str = "UTC"
    """IANA time zone of the district (``America/Chicago``): monitoring hours and "today" use it."""
    monitoring_schedule_path: str = ""
    """Optional JSON file of per-district hours and per-class periods (privacy/monitoring_hours.py);
    districts and classes it does not name use the three settings above."""
    sign_in_max_failures: int = 20
    """Failed sign-ins (a wrong token or code) one client address may make within ``SIGN_IN_WINDOW_S``
    on the teacher API or the analysts' API before it gets ``429`` (see :mod:`csync.sign_in_throttle`)."""
    sign_in_window_s: float = 60.0
    """The sliding window of ``SIGN_IN_MAX_FAILURES``, in seconds."""
    audit_log_path: str = ""
    """Append-only audit log (JSON lines); empty = ``{DATA_DIR}/audit/audit.log``."""
    audit_max_bytes: int = 10 * 1024 * 1024
    """The audit log rotates when it would grow past this size."""
    audit_keep_files: int = 10
    """Rotated audit files kept besides the current one."""

    # --- the analysts' workspace (analyst/)
    analyst_api_host: str = "127.0.0.1"
    """Bind address of ``csync analyst-api`` (usage read API and dashboard over the public view)."""
    analyst_api_port: int = 8091
    """Port of ``csync analyst-api``."""
    analyst_tokens_path: str = ""
    """JSON file of analyst tokens (SHA-256 hashes only); empty = ``{DATA_DIR}/analyst_tokens.json``."""
    analyst_catalog_path: str = ""
    """The district's app catalog (CSV, see ``analyst/catalog.py``); empty = no catalog (all uncatalogued)."""
    analyst_session_ttl_s: int = 8 * 3600
    """How long a dashboard sign-in lasts."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``), then apply ``overrides``."""
        env = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, hints[f.name], raw)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        if not self.clickhouse_url:
            # The embedded engine's folder follows DATA_DIR (never the install folder).
            object.__setattr__(self, "clickhouse_url", f"chdb://{Path(self.data_dir) / 'chdb'}")

    def to_env(self) -> dict[str, str]:
        """Every setting as the environment variable of its name: ``from_env(to_env())`` gives these
        settings back, so a child process parses exactly the parent's."""
        return {f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated)."""
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values no process can run with, naming the variable."""
        positive = (
            "partitions",
            "replication_factor",
            "min_insync_replicas",
            "presence_timeout_s",
            "max_gap_s",
            "max_event_age_h",
            "k_anonymity",
            "presence_ttl_s",
            "usage_ttl_days",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be > 0, got {getattr(self, name)!r}")
        if self.min_insync_replicas > self.replication_factor:
            raise SettingsError("MIN_INSYNC_REPLICAS must be <= REPLICATION_FACTOR")
        if self.allowed_lateness_s < 0:
            raise SettingsError(f"ALLOWED_LATENESS_S must be >= 0, got {self.allowed_lateness_s!r}")
        if not self.clickhouse_url.startswith(("chdb://", "http://", "https://")):
            raise SettingsError("CLICKHOUSE_URL must start with chdb://, http:// or https://")
        if not self.key_prefix or ":" in self.key_prefix:
            raise SettingsError("KEY_PREFIX must be non-empty and contain no ':'")
        if self.sign_in_max_failures < 1 or self.sign_in_window_s <= 0:
            raise SettingsError("SIGN_IN_MAX_FAILURES must be >= 1 and SIGN_IN_WINDOW_S > 0")
        self._validate_kafka_security()

    def _validate_kafka_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise SettingsError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
                f"got {protocol!r}"
            )
        # The user and password are checked when a Kafka client is made (csync.kafka_client): a
        # process that never talks to Kafka (the teacher API) is not handed Kafka credentials.
        if protocol.startswith("SASL_") and self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise SettingsError(
                f"KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)} with "
                f"{protocol}, got {self.kafka_sasl_mechanism!r}"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise SettingsError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")


def _parse(name: str, kind: Any, raw: str) -> Any:
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError as exc:
        raise SettingsError(f"{name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
    return raw
