"""The token store: where bearer tokens live and how running processes see changes without a restart.

One naming scheme for every kind of token: ``{TOKENS_DIR}/collector_tokens.json`` (devices → district) and
``{TOKENS_DIR}/teacher_tokens.json`` (teachers → district and classes). ``TOKENS_DIR`` defaults to
``DATA_DIR``; in Kubernetes it is a mounted Secret whose keys are those two file names (docs/deploy.md). A
single file may be moved with ``COLLECTOR_TOKENS_FILE`` / ``TEACHER_TOKENS_PATH``. Both files hold SHA-256
hashes only, never a usable token.

:class:`ReloadingFile` re-reads a file when it changes, looking at most every ``TOKEN_RELOAD_S``: a token
removed from the file (``csync … revoke``, or an edited Secret that the kubelet swaps in through its ``..data``
symlink) is refused within seconds. A file that disappears means *no tokens* (refuse everything, never keep
stale grants); a file that cannot be parsed keeps the last good content and logs the problem (never a token
or a hash), so a typo in an edit does not lock every device out.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from csync.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

COLLECTOR_TOKENS = "collector_tokens.json"
TEACHER_TOKENS = "teacher_tokens.json"


def tokens_dir(settings: Settings) -> Path:
    """The folder of the token store (``TOKENS_DIR``, default ``DATA_DIR``)."""
    return Path(settings.tokens_dir or settings.data_dir)


def collector_tokens_path(settings: Settings) -> Path:
    """The collector's token file."""
    return Path(settings.collector_tokens_file or tokens_dir(settings) / COLLECTOR_TOKENS)


def teacher_tokens_path(settings: Settings) -> Path:
    """The teacher API's token file."""
    return Path(settings.teacher_tokens_path or tokens_dir(settings) / TEACHER_TOKENS)


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
