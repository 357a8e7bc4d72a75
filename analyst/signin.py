"""One-time sign-in codes for the dashboard, and the demo's ready analyst session.

A code is 60 random bits written as ``XXXX-XXXX-XXXX`` (Crockford base32: no I, L, O, U), valid once and for
``ttl_s`` (15 minutes by default). It is issued for an analyst who holds a token and is bound to that token: the
session it opens ends when the token is revoked. Only its SHA-256 is stored (``{DATA_DIR}/analyst_signin_codes
.json``, mode 0600, next to the token file); redeeming removes it under an exclusive lock, so two browsers
cannot both use one code.

Why codes, for the demo's "ready session": the long-lived token stays in a 0600 file; what is printed on the
terminal is useless once used or after a quarter of an hour; and it travels only in the body of the sign-in
POST — never in a URL, where browser history, ``Referer`` headers, proxy and server logs would keep it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from pathlib import Path
from typing import Any

import orjson

from analyst.tokens import AnalystBook, hash_token, issue_token, tokens_path
from csync.settings import Settings

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def codes_path(settings: Settings) -> Path:
    """The sign-in code file, next to the analyst token file."""
    return tokens_path(settings).with_name("analyst_signin_codes.json")


def normalise(code: str) -> str:
    """A typed code in canonical form (case, dashes and spaces do not matter)."""
    return "".join(c for c in code.upper() if c.isalnum())


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        codes: list[dict[str, Any]] = orjson.loads(path.read_bytes())["codes"]
    except FileNotFoundError:
        return []
    return codes


def _store(path: Path, codes: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps({"version": 1, "codes": codes}))
    tmp.replace(path)


def _locked(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 - closed by the caller
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def issue_code(
    path: Path, analyst_id: str, token_digest: bytes, ttl_s: float = 900, now: float | None = None
) -> str:
    """A new one-time code for ``analyst_id`` bound to the token with ``token_digest``; shown once."""
    now = time.time() if now is None else now
    raw = "".join(secrets.choice(ALPHABET) for _ in range(12))
    with _locked(path):
        live = [c for c in _load(path) if c["expires"] > now]
        live.append({"analyst_id": analyst_id, "code_sha256": hash_token(raw).hex(),
                     "token_sha256": token_digest.hex(), "expires": now + ttl_s})  # fmt: skip
        _store(path, live)
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def redeem(path: Path, code: str, now: float | None = None) -> tuple[str, bytes] | None:
    """``(analyst, token hash)`` of a live code, which is used up; ``None`` for anything else."""
    now = time.time() if now is None else now
    wanted = hash_token(normalise(code)).hex()
    with _locked(path):
        codes = _load(path)
        found = next((c for c in codes if c["code_sha256"] == wanted and c["expires"] > now), None)
        if found is None:
            return None
        _store(path, [c for c in codes if c is not found and c["expires"] > now])
    return str(found["analyst_id"]), bytes.fromhex(found["token_sha256"])


def ready_session(settings: Settings, analyst_id: str = "demo-analyst") -> str:
    """Issue a token (kept in a 0600 file beside the token file) and a one-time code; the line to print."""
    token = issue_token(tokens_path(settings), analyst_id)
    token_file = tokens_path(settings).with_name(f"{analyst_id}.token")
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    assert AnalystBook(tokens_path(settings)).authenticate(token) == analyst_id  # noqa: S101
    code = issue_code(codes_path(settings), analyst_id, hash_token(token))
    return (f"analysts' dashboard: http://{settings.analyst_api_host}:{settings.analyst_api_port}/ — sign in "
            f"with the one-time code {code} (valid 15 min, once; API token in {token_file})")  # fmt: skip
