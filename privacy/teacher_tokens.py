"""Teacher bearer tokens: each bound to one district and a set of classes; only SHA-256 hashes are stored.

File format (``TEACHER_TOKENS_PATH``, JSON, mode 0600)::

    {"version": 1,
     "teachers": [{"teacher_id": "t-17", "district_id": "d1", "classes": ["c-101", "c-205"],
                   "token_sha256": "<64 hex>"}]}

A token is 256 random bits, shown once when issued (``csync teacher-token add``) and never written anywhere;
hashing, constant-time lookup and the atomic file write are the token store's (:mod:`csync.tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from csync.settings import Settings
from csync.tokens import (
    is_sha256_hex,
    match_digest,
    new_token,
    teacher_tokens_path,
    token_digest,
    write_private_json,
)
from schemas.probe import check_real_district
from schemas.roster import is_valid_id


class TokenFileError(ValueError):
    """The tokens file is malformed; the message never contains a token or a hash."""


@dataclass(frozen=True, slots=True)
class Teacher:
    """An authenticated teacher: who they are, their district and the classes they teach."""

    teacher_id: str
    district_id: str
    classes: frozenset[str]


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as stored in the file."""
    return token_digest(token).hex()


__all__ = ["Teacher", "TokenBook", "TokenFileError", "hash_token", "new_token", "tokens_path"]


def tokens_path(settings: Settings) -> Path:
    """Where the token file of these settings lives."""
    return teacher_tokens_path(settings)


@dataclass(slots=True)
class TokenBook:
    """The teachers of a token file, reloaded when the file changes (revocation without restart)."""

    path: Path
    _entries: list[tuple[bytes, Teacher]] = field(default_factory=list)
    _stamp: tuple[int, int, int] | None = None

    def authenticate(self, token: str | None) -> Teacher | None:
        """The teacher of ``token``, or ``None``; compares against every entry in constant time each."""
        if not token:
            self._refresh()
            return None
        return self.authenticate_digest(token_digest(token))

    def authenticate_digest(self, presented: bytes) -> Teacher | None:
        """The teacher whose token has this SHA-256 digest (a session re-checks its token by it)."""
        self._refresh()
        return match_digest(self._entries, presented)

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._entries, self._stamp = [], None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._entries = [(bytes.fromhex(h), t) for h, t in parse_tokens(self.path.read_bytes())]
            self._stamp = stamp


def parse_tokens(raw: bytes) -> list[tuple[str, Teacher]]:
    """``(token_sha256, Teacher)`` pairs of a token file; raises :class:`TokenFileError`."""
    try:
        doc: Any = orjson.loads(raw)
        teachers = doc["teachers"]
        if doc.get("version") != 1 or not isinstance(teachers, list):
            raise TokenFileError("token file must be {'version': 1, 'teachers': [...]}")
        out = []
        for n, entry in enumerate(teachers):
            digest = str(entry["token_sha256"])
            if not is_sha256_hex(digest):
                raise TokenFileError(f"teacher #{n}: token_sha256 must be 64 lower-case hex digits")
            ids = [entry["teacher_id"], entry["district_id"], *entry["classes"]]
            if not all(is_valid_id(i) for i in ids):
                raise TokenFileError(f"teacher #{n}: ids must be 1-64 chars of [A-Za-z0-9_.-]")
            teacher = Teacher(
                entry["teacher_id"], entry["district_id"], frozenset(entry["classes"])
            )
            out.append((digest, teacher))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise TokenFileError(f"malformed token file: {type(exc).__name__}") from exc


def _write(path: Path, teachers: list[dict[str, Any]]) -> None:
    write_private_json(path, {"version": 1, "teachers": teachers})


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    parse_tokens(path.read_bytes())  # validate before editing
    teachers: list[dict[str, Any]] = orjson.loads(path.read_bytes())["teachers"]
    return teachers


def issue_token(path: Path, teacher_id: str, district_id: str, classes: list[str]) -> str:
    """Add a token for a teacher (other tokens of the teacher stay valid) and return it — the only copy."""
    check_real_district(district_id)  # no teacher ever sees the probe's reserved district
    token = new_token()
    entry = {
        "teacher_id": teacher_id,
        "district_id": district_id,
        "classes": sorted(set(classes)),
        "token_sha256": hash_token(token),
    }
    teachers = [*_read(path), entry]
    parse_tokens(orjson.dumps({"version": 1, "teachers": teachers}))  # refuse bad ids
    _write(path, teachers)
    return token


def revoke_teacher(path: Path, teacher_id: str) -> int:
    """Remove every token of a teacher; return how many were removed."""
    teachers = _read(path)
    kept = [t for t in teachers if t["teacher_id"] != teacher_id]
    _write(path, kept)
    return len(teachers) - len(kept)


def revoke_district(path: Path, district_id: str) -> int:
    """Remove every teacher token of a district (part of offboarding a district before a purge)."""
    teachers = _read(path)
    kept = [t for t in teachers if t["district_id"] != district_id]
    _write(path, kept)
    return len(teachers) - len(kept)
