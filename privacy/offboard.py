"""Offboarding a district before its purge: no device or teacher may send or read its data any more.

The collector's token file (``producers.collector``, ``{"sha256:<hex>": district_id}``) is loaded when the
collector starts, so after :func:`revoke_collector_tokens` the collector must be restarted; the teacher API
re-reads its token file on every request, so :func:`privacy.teacher_tokens.revoke_district` applies at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from csync.settings import Settings


def collector_tokens_path(settings: Settings) -> Path:
    """Where the collector keeps its tokens (the collector's own rule)."""
    from producers.collector import tokens_path

    return tokens_path(settings)


def revoke_collector_tokens(path: Path, district_id: str) -> int:
    """Remove every collector token of ``district_id``; return how many were removed."""
    from producers.collector import load_tokens

    if not path.exists():
        return 0
    tokens = load_tokens(path)
    kept = {h: d for h, d in tokens.items() if d != district_id}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(kept, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return len(tokens) - len(kept)
