"""The token store: where bearer tokens live and how running processes see changes without a restart.

One naming scheme for every kind of token: ``{TOKENS_DIR}/collector_tokens.json`` (devices → district),
``{TOKENS_DIR}/teacher_tokens.json`` (teachers → district and classes) and ``{TOKENS_DIR}/analyst_tokens.json``
(analysts). ``TOKENS_DIR`` defaults to ``DATA_DIR``; in Kubernetes it is a mounted Secret whose keys are those
file names (docs/deploy.md). A single file may be moved with ``COLLECTOR_TOKENS_FILE`` /
``TEACHER_TOKENS_PATH`` / ``ANALYST_TOKENS_PATH``. Every file holds SHA-256 hashes only, never a usable token:
a token is 256 random bits, so a leaked file grants nothing (no salt or slow hash is needed for random tokens,
unlike passwords), and a lookup compares the presented token's hash with *every* entry in constant time, so
the time taken says nothing about which entry matched (:func:`match_digest`).

:class:`ReloadingFile` re-reads a file when it changes, looking at most every ``TOKEN_RELOAD_S``: a token
removed from the file (``csync … revoke``, or an edited Secret that the kubelet swaps in through its ``..data``
symlink) is refused within seconds. A file that disappears means *no tokens* (refuse everything, never keep
stale grants); a file that cannot be parsed keeps the last good content and logs the problem (never a token
or a hash), so a typo in an edit does not lock every device out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Generic, TypeVar

import orjson

from csync.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

COLLECTOR_TOKENS = "collector_tokens.json"
TEACHER_TOKENS = "teacher_tokens.json"
ANALYST_TOKENS = "analyst_tokens.json"
_HEX = frozenset("0123456789abcdef")


def tokens_dir(settings: Settings) -> Path:
    """The folder of the token store (``TOKENS_DIR``, default ``DATA_DIR``)."""
    return Path(settings.tokens_dir or settings.data_dir)


def collector_tokens_path(settings: Settings) -> Path:
    """The collector's token file."""
    return Path(settings.collector_tokens_file or tokens_dir(settings) / COLLECTOR_TOKENS)


def teacher_tokens_path(settings: Settings) -> Path:
    """The teacher API's token file."""
    return Path(settings.teacher_tokens_path or tokens_dir(settings) / TEACHER_TOKENS)


def analyst_tokens_path(settings: Settings) -> Path:
    """The analyst API's token file."""
    return Path(settings.analyst_tokens_path or tokens_dir(settings) / ANALYST_TOKENS)


def new_token() -> str:
    """A fresh random token (256 bits), shown once to whoever it is issued to."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token: what the stores keep (as hex) and what lookups compare."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def is_sha256_hex(text: str) -> bool:
    """Whether ``text`` is a stored token hash: 64 lower-case hex digits."""
    return len(text) == 64 and _HEX.issuperset(text)


def match_digest(entries: Iterable[tuple[bytes, T]], presented: bytes) -> T | None:
    """The owner whose stored digest equals ``presented``, comparing with *every* entry in constant
    time and without stopping at a match, so the time taken does not depend on which entry matched."""
    found: T | None = None
    for stored, owner in entries:
        if hmac.compare_digest(stored, presented):
            found = owner
    return found


def write_private_json(path: Path, doc: object) -> None:
    """Replace ``path`` with ``doc`` as JSON, mode 0600, atomically: a running service never reads half
    a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class ReloadingFile(Generic[T]):
    """The parsed content of ``path``, re-read when the file changes (checked every ``interval_s``).

    ``parse`` turns the file's bytes into a value or raises ``ValueError``; ``empty`` is the value of a
    missing file. The first load happens at construction and raises, so a process never starts on a bad
    file.
    """

    def __init__(
        self,
        path: Path,
        parse: Callable[[bytes], T],
        empty: T,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._parse = parse
        self._empty = empty
        self._interval_s = interval_s
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = self._stat()
        self._value = parse(path.read_bytes()) if self._stamp is not None else empty
        self._checked = clock()

    def current(self) -> T:
        """The content as of at most ``interval_s`` ago."""
        now = self._clock()
        if now - self._checked >= self._interval_s:
            self._checked = now
            self._reload()
        return self._value

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a Secret's ..data swap changes the inode
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        if stamp is None:
            log.warning("token file %s is gone: refusing every token until it is back", self.path)
            self._value, self._stamp = self._empty, None
            return
        try:
            value = self._parse(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            # The message of our parsers never holds a token or a hash.
            log.error("token file %s unusable, keeping the previous tokens: %s", self.path, exc)
            return
        self._value, self._stamp = value, stamp
        log.info("token file %s reloaded", self.path)


class ReloadingTokens(Mapping[str, str]):
    """``{token_hash: owner}`` read through a :class:`ReloadingFile` (what the collector looks up)."""

    def __init__(self, source: ReloadingFile[dict[str, str]]) -> None:
        self._source = source

    def __getitem__(self, key: str) -> str:
        return self._source.current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._source.current())

    def __len__(self) -> int:
        return len(self._source.current())


def collector_token_store(
    settings: Settings, load: Callable[[Path], dict[str, str]]
) -> ReloadingTokens:
    """The collector's tokens, reloaded on change; ``load`` is the collector's own file reader (it
    raises ``ValueError`` on a bad file). Fails at once when the file is missing or bad at start."""
    path = collector_tokens_path(settings)
    load(path)  # a process never starts without a usable token file
    empty: dict[str, str] = {}
    source = ReloadingFile(path, lambda _raw: load(path), empty, settings.token_reload_s)
    return ReloadingTokens(source)
