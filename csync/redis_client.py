"""The one way ClassroomSync opens Redis: ``REDIS_URL`` plus the password and TLS settings.

``redis://`` or ``rediss://`` (TLS, e.g. redis-server's ``tls-port`` or a managed Redis). The password comes
from ``REDIS_PASSWORD_FILE`` when set (a mounted Secret), else from the URL; the CA bundle and an optional
client certificate from ``REDIS_SSL_*``. Nothing here logs the password or the URL's userinfo.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis

from csync.kafka_client import read_secret
from csync.settings import Settings


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url(settings.redis_url, ...)``: credentials and TLS."""
    options: dict[str, Any] = {}
    if settings.redis_password_file:
        options["password"] = read_secret(settings.redis_password_file, "REDIS_PASSWORD_FILE")
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        if settings.redis_ssl_cafile:
            options["ssl_ca_certs"] = settings.redis_ssl_cafile
        if settings.redis_ssl_certfile:
            options["ssl_certfile"] = settings.redis_ssl_certfile
            options["ssl_keyfile"] = settings.redis_ssl_keyfile or None
    return options


def redis_client(settings: Settings, **kwargs: Any) -> Redis:
    """An asyncio Redis client for ``settings`` (``kwargs``: timeouts, ``decode_responses`` …)."""
    return Redis.from_url(settings.redis_url, **redis_options(settings), **kwargs)


def redacted_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(
        (parts.scheme, f"{user}{host}{port}", parts.path, parts.query, parts.fragment)
    )
