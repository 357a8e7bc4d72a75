"""Open a clickhouse-connect client for ``CLICKHOUSE_URL`` (CONTRACT §5).

Two kinds of URL:

- ``chdb:///abs/path`` — clickhouse-connect's own embedded chDB backend, data on disk at ``/abs/path``.
- ``http(s)://user:password@host:port`` — a ClickHouse server.

chDB rules, and how this module keeps them:

- **One data path per process.** The embedded engine is initialised once per process with one path; asking for
  another path later fails inside chDB with an obscure error. :func:`clickhouse_client` remembers the first path
  and refuses a different one with :class:`ChdbPathError` naming both.
- **One process per path.** Two processes writing the same directory corrupt it. The first client on a path takes
  an exclusive ``flock`` on ``{path}.csync.lock`` (beside the directory) and keeps it until the process exits; a
  second process gets :class:`ChdbPathBusy` at once instead of a corrupted store. While the ClickHouse sink runs it
  owns the path; analysts read through the sink's read endpoint instead (see :mod:`sinks.usage_read`).

Passwords never appear in logs, errors or ``repr``: use :func:`redact_url` to print a URL.
"""

from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client


class ClickHouseUrlError(ValueError):
    """``CLICKHOUSE_URL`` cannot be used; the message never contains the password."""


class ChdbPathError(RuntimeError):
    """This process already opened chDB on another path (chDB allows one path per process)."""


class ChdbPathBusy(RuntimeError):
    """Another process holds the chDB path (normally the running ClickHouse sink)."""


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """A parsed ``CLICKHOUSE_URL``."""

    kind: str  # "chdb" or "http"
    path: str = ""  # chdb only: absolute data directory
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = field(default="", repr=False)
    secure: bool = False


def parse_clickhouse_url(url: str) -> ClickHouseTarget:
    """Parse and check a ``CLICKHOUSE_URL``; raise :class:`ClickHouseUrlError` (password-free) if unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ClickHouseUrlError(f"CLICKHOUSE_URL {redact_url(url)!r} is malformed") from exc
    if parts.scheme == "chdb":
        if parts.netloc:
            raise ClickHouseUrlError(
                "CLICKHOUSE_URL must be chdb:///abs/path (three slashes, absolute path), "
                f"got {redact_url(url)!r}"
            )
        path = unquote(parts.path)
        if not path.startswith("/") or path.rstrip("/") == "":
            raise ClickHouseUrlError(f"chdb path must be absolute, got {redact_url(url)!r}")
        return ClickHouseTarget(kind="chdb", path=os.path.normpath(path))
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ClickHouseUrlError(f"CLICKHOUSE_URL has no host: {redact_url(url)!r}")
        if parts.path not in ("", "/") or parts.query:
            raise ClickHouseUrlError(
                f"CLICKHOUSE_URL takes no path or query (the database is CLICKHOUSE_DATABASE): "
                f"{redact_url(url)!r}"
            )
        secure = parts.scheme == "https"
        return ClickHouseTarget(
            kind="http",
            host=parts.hostname,
            port=port or (8443 if secure else 8123),
            username=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            secure=secure,
        )
    raise ClickHouseUrlError(
        f"CLICKHOUSE_URL must start with chdb://, http:// or https://, got {redact_url(url)!r}"
    )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` — the only form of a URL we log."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        # Unparseable: say nothing about what is after the scheme, it may hold a password.
        return url.split("://", 1)[0] + "://***"


_chdb_lock = threading.Lock()
_chdb_path: str | None = None
_chdb_lockfile: IO[str] | None = None


def _claim_chdb_path(path: str) -> None:
    """Make ``path`` this process's one chDB path, and hold the cross-process lock on it."""
    global _chdb_path, _chdb_lockfile
    real = os.path.realpath(path)
    with _chdb_lock:
        if _chdb_path is not None:
            if _chdb_path != real:
                raise ChdbPathError(
                    f"this process already uses chDB at {_chdb_path}; chDB allows one data path "
                    f"per process, so {real} cannot be opened here"
                )
            return
        Path(real).parent.mkdir(parents=True, exist_ok=True)
        lockfile = open(real.rstrip("/") + ".csync.lock", "a+")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lockfile.seek(0)
            holder = lockfile.read().strip() or "another process"
            lockfile.close()
            raise ChdbPathBusy(
                f"chDB path {real} is in use by {holder}; only one process may open it. While the "
                "ClickHouse sink runs, read through its read endpoint (csync usage does this)."
            ) from exc
        lockfile.seek(0)
        lockfile.truncate()
        lockfile.write(f"pid {os.getpid()}\n")
        lockfile.flush()
        _chdb_lockfile = lockfile
        _chdb_path = real


def chdb_path_in_use() -> str | None:
    """The chDB path this process opened, if any."""
    return _chdb_path


def clickhouse_client(
    url: str,
    *,
    database: str | None = None,
    settings: dict[str, Any] | None = None,
    connect_timeout_s: float = 5.0,
    send_receive_timeout_s: float = 60.0,
) -> Client:
    """A clickhouse-connect client for ``url`` (see the module doc for the chDB rules).

    ``database`` becomes the client's default database (it must exist; pass ``None`` before migrating).
    """
    target = parse_clickhouse_url(url)
    if target.kind == "chdb":
        _claim_chdb_path(target.path)
        Path(target.path).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(
            dsn=f"chdb://{target.path}", database=database, settings=settings
        )
    return clickhouse_connect.get_client(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        secure=target.secure,
        database=database or "",
        settings=settings,
        connect_timeout=connect_timeout_s,
        send_receive_timeout=send_receive_timeout_s,
        # We retry ourselves (with backoff and metrics); the driver must not retry inserts behind our back.
        query_retries=0,
    )
