"""The one way ClassroomSync opens Redis: ``REDIS_URL`` plus the password and TLS settings.

``REDIS_URL`` chooses the deployment:

- ``redis://host:port/db`` or ``rediss://…`` (TLS, e.g. redis-server's ``tls-port`` or a managed Redis): one
  server;
- ``redis+cluster://host:port[,host:port…]`` or ``rediss+cluster://…`` (TLS): a Redis Cluster. The listed nodes
  are only where the client starts; it learns the slot map from any of them and follows MOVED/ASK redirections
  and failovers by itself. A cluster has one database, so no ``/db`` part is accepted.

The password comes from ``REDIS_PASSWORD_FILE`` when set (a mounted Secret), else from the URL; the CA bundle
and an optional client certificate from ``REDIS_SSL_*``. Nothing here logs the password or the URL's userinfo.

Every caller gets an :data:`AnyRedis` and uses only commands both kinds serve. On a cluster a command or a
script may only touch keys of one hash slot: a pipeline is split per node by the client, multi-key ``UNLINK``
per slot, and ``SCAN`` walks every master (see :mod:`sinks.redis_presence` for what stays atomic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.cluster
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from csync.kafka_client import read_secret
from csync.settings import Settings, SettingsError

AnyRedis: TypeAlias = Redis | RedisCluster
AnySyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A parsed ``redis+cluster://`` URL: the startup nodes and the URL's credentials."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None
    password: str | None


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterUrl:
    """``redis+cluster://[user:password@]host:port[,host:port…]`` → its parts (a clear error otherwise)."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        raise SettingsError(
            f"REDIS_URL: {scheme!r} is not a cluster scheme ({', '.join(CLUSTER_SCHEMES)})"
        )
    userinfo, _, hosts = rest.rpartition("@")
    hosts = hosts.rstrip("/")
    if "/" in hosts or "?" in hosts:
        raise SettingsError("REDIS_URL: a Redis Cluster has one database; remove the /db part")
    nodes = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SettingsError(f"REDIS_URL: {item!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    username, _, password = userinfo.partition(":")
    return ClusterUrl(
        nodes=tuple(nodes),
        tls=scheme == "rediss+cluster",
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url(settings.redis_url, ...)``: credentials and TLS."""
    options: dict[str, Any] = {}
    if settings.redis_password_file:
        options["password"] = read_secret(settings.redis_password_file, "REDIS_PASSWORD_FILE")
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_url.startswith(("rediss://", "rediss+cluster://")):
        options["ssl_cert_reqs"] = "required"
        if settings.redis_ssl_cafile:
            options["ssl_ca_certs"] = settings.redis_ssl_cafile
        if settings.redis_ssl_certfile:
            options["ssl_certfile"] = settings.redis_ssl_certfile
            options["ssl_keyfile"] = settings.redis_ssl_keyfile or None
    return options


def _cluster_options(settings: Settings) -> tuple[ClusterUrl, dict[str, Any]]:
    url = parse_cluster_url(settings.redis_url)
    options: dict[str, Any] = {"username": url.username, "password": url.password, "ssl": url.tls}
    options.update(redis_options(settings))
    return url, options


def redis_client(settings: Settings, **kwargs: Any) -> AnyRedis:
    """An asyncio client for ``settings`` (``kwargs``: timeouts, ``decode_responses`` …): a
    :class:`RedisCluster` for a ``redis+cluster://`` URL, else a :class:`Redis`."""
    if not is_cluster_url(settings.redis_url):
        return Redis.from_url(settings.redis_url, **redis_options(settings), **kwargs)
    url, options = _cluster_options(settings)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in url.nodes], **options, **kwargs
    )


def sync_redis_client(settings: Settings, **kwargs: Any) -> AnySyncRedis:
    """The blocking twin of :func:`redis_client` (command-line tools and test harnesses)."""
    if not is_cluster_url(settings.redis_url):
        return redis.Redis.from_url(settings.redis_url, **redis_options(settings), **kwargs)
    url, options = _cluster_options(settings)
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in url.nodes]  # type: ignore[no-untyped-call]
    return redis.cluster.RedisCluster(startup_nodes=nodes, **options, **kwargs)


def redacted_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    if is_cluster_url(url):
        scheme, _, rest = url.partition("://")
        userinfo, at, hosts = rest.rpartition("@")
        if not at or ":" not in userinfo:
            return url
        return f"{scheme}://{userinfo.partition(':')[0]}:***@{hosts}"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(
        (parts.scheme, f"{user}{host}{port}", parts.path, parts.query, parts.fragment)
    )
