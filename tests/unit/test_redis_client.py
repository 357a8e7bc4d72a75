"""``REDIS_URL`` chooses one server or a Redis Cluster (pure parsing; no server is reached)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from csync.redis_client import (
    is_cluster_url,
    parse_cluster_url,
    redacted_url,
    redis_client,
    redis_options,
)
from csync.settings import Settings, SettingsError


def test_cluster_url_lists_its_startup_nodes() -> None:
    url = parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert url.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert not url.tls and url.username is None and url.password is None


def test_tls_cluster_url_with_credentials() -> None:
    url = parse_cluster_url("rediss+cluster://app:s%40cret@r1:6380/")
    assert url.tls and url.username == "app" and url.password == "s@cret"  # noqa: S105
    assert url.nodes == (("r1", 6380),)


@pytest.mark.parametrize(
    "bad",
    ["redis+cluster://r1:7000/0", "redis+cluster://r1", "redis+cluster://r1:x", "redis://r1:1"],
)
def test_bad_cluster_urls_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        parse_cluster_url(bad)


def test_the_scheme_chooses_the_client() -> None:
    assert is_cluster_url("redis+cluster://r:1") and not is_cluster_url("redis://r:1/0")
    single = redis_client(Settings.from_env(env={}, redis_url="redis://127.0.0.1:1/0"))
    cluster = redis_client(Settings.from_env(env={}, redis_url="redis+cluster://127.0.0.1:1"))
    assert isinstance(single, Redis) and isinstance(cluster, RedisCluster)


def test_tls_options_apply_to_a_cluster_too() -> None:
    s = Settings.from_env(env={}, redis_url="rediss+cluster://r:1", redis_ssl_cafile="/ca.pem")
    assert redis_options(s) == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem"}


def test_cluster_password_is_redacted() -> None:
    assert redacted_url("redis+cluster://u:pw@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"
    assert redacted_url("redis+cluster://a:1,b:2") == "redis+cluster://a:1,b:2"
