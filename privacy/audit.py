"""The audit trail: who did what to which target, when — append-only JSON lines, never student data.

One record per line: ``{"when", "who", "action", "target", "status", "detail", "prev"}``.

- ``who`` is an operator (``$USER`` of a CLI run), a teacher id (the teacher API) or ``analyst:$USER``;
  ``target`` a district, a class id or a query range. Student ids, names, apps and timestamps of students
  never go in: :func:`check_entry` refuses detail keys that name student data and values that are not short
  scalars, so a careless caller fails in tests instead of leaking into the log.
- ``prev`` is the SHA-256 of the previous line (across rotations), so :func:`verify_chain` detects an edited or
  deleted line in the kept files.
- Every append takes an exclusive ``flock`` (the teacher API and CLI commands may write at once), writes one
  line with ``O_APPEND`` and ``fsync``s it before returning: an action is audited before it is reported done.
- Rotation by size: when a line would make the file pass ``max_bytes``, ``audit.log`` becomes ``audit.log.1``
  (``.1`` → ``.2`` …) and only ``keep`` rotated files are kept.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from csync.settings import Settings

# Words of detail keys (split at "_") that would carry student data: ``student_id``, ``sub_app``, ``name``…
FORBIDDEN_DETAIL_WORDS = frozenset(
    ("student", "name", "email", "app", "ts", "device", "url", "ip", "phone", "address")
)
MAX_VALUE_CHARS = 200
GENESIS = "0" * 64


class AuditError(ValueError):
    """An audit entry would carry data the audit log must never hold (a bug in the caller)."""


def check_entry(
    who: str, action: str, target: str, status: str, detail: Mapping[str, object]
) -> None:
    """Refuse entries that could carry student data: long values, nested values, student-ish keys."""
    for field_name, value in (("who", who), ("action", action), ("target", target)):
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE_CHARS:
            raise AuditError(f"{field_name} must be a non-empty string of at most 200 chars")
    if not isinstance(status, str) or len(status) > MAX_VALUE_CHARS:
        raise AuditError("status must be a string of at most 200 chars")
    for key, item in detail.items():
        if FORBIDDEN_DETAIL_WORDS.intersection(key.lower().split("_")):
            raise AuditError(f"detail key {key!r} could carry student data")
        if isinstance(item, bool) or not isinstance(item, int | float | str):
            raise AuditError(f"detail {key!r} must be a number or a short string")
        if isinstance(item, str) and len(item) > MAX_VALUE_CHARS:
            raise AuditError(f"detail {key!r} is longer than 200 chars")


def audit_path(settings: Settings) -> Path:
    """Where the audit log of these settings lives."""
    if settings.audit_log_path:
        return Path(settings.audit_log_path)
    return Path(settings.data_dir) / "audit" / "audit.log"


@dataclass(frozen=True, slots=True)
class AuditLog:
    """An append-only, size-rotated, fsync'd JSON-lines file."""

    path: Path
    max_bytes: int = 10 * 1024 * 1024
    keep: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(audit_path(settings), settings.audit_max_bytes, settings.audit_keep_files)

    def append(
        self,
        who: str,
        action: str,
        target: str,
        *,
        status: str = "ok",
        detail: Mapping[str, object] | None = None,
        now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Append one entry durably (fsync'd) and return it."""
        detail = dict(detail or {})
        check_entry(who, action, target, status, detail)
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            entry: dict[str, Any] = {
                "when": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "who": who,
                "action": action,
                "target": target,
                "status": status,
                "detail": detail,
                "prev": self._last_hash(),
            }
            line = orjson.dumps(entry) + b"\n"
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def files(self) -> list[Path]:
        """The kept files, oldest first (``audit.log.N`` … ``audit.log``)."""
        rotated = [self._rotated(i) for i in range(self.keep, 0, -1)]
        return [p for p in [*rotated, self.path] if p.exists()]

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every kept entry, oldest first."""
        for path in self.files():
            with path.open("rb") as fh:
                for raw in fh:
                    if raw.strip():
                        yield orjson.loads(raw)

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` entries, oldest first."""
        if n <= 0:
            return []
        out: list[dict[str, Any]] = []
        for path in reversed(self.files()):
            lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
            out = [orjson.loads(ln) for ln in lines[-(n - len(out)) :]] + out
            if len(out) >= n:
                break
        return out

    def verify_chain(self) -> int:
        """Check every kept line's ``prev`` against the line before it; return the lines checked.

        The first kept line's ``prev`` cannot be checked once older files were rotated away. Raises
        :class:`AuditError` naming the first broken line.
        """
        prev: str | None = None
        checked = 0
        for path in self.files():
            for number, raw in enumerate(path.read_bytes().splitlines(), 1):
                if not raw.strip():
                    continue
                entry = orjson.loads(raw)
                if prev is not None and entry.get("prev") != prev:
                    raise AuditError(f"{path.name} line {number}: chain broken (edited or deleted)")
                prev = hashlib.sha256(raw).hexdigest()
                checked += 1
        return checked

    # --- internals

    def _rotated(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _last_hash(self) -> str:
        for path in reversed(self.files()):
            last = _last_line(path)
            if last:
                return hashlib.sha256(last).hexdigest()
        return GENESIS

    def _rotate(self) -> None:
        oldest = self._rotated(self.keep)
        if oldest.exists():
            oldest.unlink()
        for i in range(self.keep - 1, 0, -1):
            src = self._rotated(i)
            if src.exists():
                src.rename(self._rotated(i + 1))
        if self.keep > 0:
            self.path.rename(self._rotated(1))
        else:
            self.path.unlink()
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the renames survive a crash
        finally:
            os.close(dir_fd)


def _last_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        block = 4096
        while True:
            start = max(0, size - block)
            fh.seek(start)
            data = fh.read(size - start)
            lines = [ln for ln in data.splitlines() if ln.strip()]
            if len(lines) >= 2 or start == 0:
                return lines[-1] if lines else b""
            block *= 2


def record_usage_query(
    settings: Settings,
    day_from: dt.date,
    day_to: dt.date,
    app: str | None,
    rows: int,
    *,
    who: str | None = None,
) -> None:
    """Audit one analyst query of the public usage view (hook for ``csync usage``).

    ``who`` defaults to ``analyst:{login name}``; the target names the view, the range and the app filter.
    """
    import getpass

    target = f"usage.app_daily_public {day_from.isoformat()}..{day_to.isoformat()}"
    if app:
        target += f" app={app[:64]}"
    AuditLog.from_settings(settings).append(
        who or f"analyst:{getpass.getuser()}", "usage.query", target, detail={"rows": rows}
    )
