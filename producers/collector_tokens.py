"""The collector's device tokens and per-token rate limits.

Tokens are stored hashed (``{"sha256:<hex>": district_id}``, mode 0600): the file never holds a
usable token, and the token decides the district of every event it sends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from csync.settings import Settings
from csync.tokens import collector_tokens_path, write_private_json
from schemas.probe import check_real_district


class TokenError(ValueError):
    """The token file cannot be used."""


def hash_token(token: str) -> str:
    """The form tokens are stored in: ``sha256:<hex>`` (the file never holds a usable token)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: Path) -> dict[str, str]:
    """``{token_hash: district_id}`` from the JSON token file."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise TokenError(f"cannot read collector tokens {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and k.startswith("sha256:") and isinstance(v, str)
        for k, v in data.items()
    ):
        raise TokenError(f"{path}: expected {{'sha256:<hex>': district_id}}")
    return data


def add_token(path: Path, token: str, district_id: str) -> None:
    """Store ``token`` (hashed) for ``district_id`` in the token file, creating it if needed."""
    check_real_district(district_id)  # the probe's reserved district never gets a device token
    tokens = load_tokens(path) if path.exists() else {}
    tokens[hash_token(token)] = district_id
    write_private_json(
        path, tokens
    )  # created 0600: never readable by others, not even for a moment


def tokens_path(settings: Settings) -> Path:
    """The collector's token file (the one token store's naming scheme: ``csync/tokens.py``)."""
    return collector_tokens_path(settings)


@dataclass
class TokenBucket:
    """A token's event rate: ``rate`` per second on average, bursts up to ``burst``."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, n: int, now: float) -> float:
        """0 if ``n`` events may pass now, else the seconds to wait before retrying."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate
