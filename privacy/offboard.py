"""Offboarding a district before its purge: no device or teacher may send or read its data any more.

The collector's token file (``{"sha256:<hex>": district_id}``) and the teacher API's are re-read by the running
processes when they change (:mod:`csync.tokens`), so :func:`revoke_collector_tokens` and
:func:`privacy.teacher_tokens.revoke_district` apply within ``TOKEN_RELOAD_S``, without a restart.
"""

from __future__ import annotations

from pathlib import Path

from csync.settings import Settings
from csync.tokens import write_private_json


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
    write_private_json(path, kept)
    return len(tokens) - len(kept)
