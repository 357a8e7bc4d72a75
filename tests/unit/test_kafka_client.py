"""Security options of the Kafka and Redis clients, and where DATA_DIR defaults to."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from csync.kafka_client import kafka_options, sasl_password
from csync.redis_client import redacted_url, redis_options
from csync.settings import Settings, SettingsError, default_data_dir
from csync.stack_tls import make_pki


def settings(**values: object) -> Settings:
    return Settings.from_env(env={}, **values)


def test_plaintext_adds_nothing() -> None:
    assert kafka_options(settings()) == {}


def test_sasl_ssl_gives_every_option_and_the_password_file_wins(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    secret = tmp_path / "password"
    secret.write_text("from-the-file\n")
    s = settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="app", kafka_sasl_password="from-env",  # noqa: S106
        kafka_sasl_password_file=str(secret), kafka_ssl_cafile=str(pki.ca_cert),
    )  # fmt: skip
    options = kafka_options(s)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "app"
    assert options["sasl_plain_password"] == "from-the-file"  # noqa: S105
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname is True
    assert "from-env" not in repr(s)


def test_ssl_alone_has_no_sasl(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    options = kafka_options(
        settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(pki.ca_cert))
    )
    assert set(options) == {"security_protocol", "ssl_context"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"},
         "KAFKA_SASL_MECHANISM must be one of"),
        ({"kafka_ssl_certfile": "/c.pem"}, "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together"),
    ],
)  # fmt: skip
def test_unusable_security_settings_are_refused_by_name(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(**values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "KAFKA_SASL_USERNAME is required"),
        (
            {"kafka_sasl_username": "u"},
            "KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD) is required",
        ),
    ],
)
def test_a_kafka_client_without_credentials_is_refused_by_name(
    values: dict[str, str], message: str
) -> None:
    # A process that never makes a Kafka client (the teacher API) starts without Kafka credentials.
    s = settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN", **values)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kafka_options(s)


def test_an_unreadable_password_file_names_the_setting(tmp_path: Path) -> None:
    s = settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u", kafka_sasl_password_file=str(tmp_path / "missing"),
    )  # fmt: skip
    with pytest.raises(SettingsError, match="KAFKA_SASL_PASSWORD_FILE"):
        sasl_password(s)


def test_redis_tls_and_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("redis-pw\n")
    s = settings(redis_url="rediss://r:6380/0", redis_password_file=str(secret),
                 redis_ssl_cafile="/ca.pem")  # fmt: skip
    assert redis_options(s) == {
        "password": "redis-pw", "ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem",
    }  # fmt: skip
    assert redis_options(settings()) == {}
    assert redacted_url("rediss://u:pw@r:6380/0") == "rediss://u:***@r:6380/0"
    assert redacted_url("redis://r:6379/0") == "redis://r:6379/0"


def test_data_dir_is_never_the_install_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text("")
    assert default_data_dir({}, checkout) == str(checkout / ".local")
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    home = tmp_path / "home"
    assert default_data_dir({"HOME": str(home)}, site) == str(home / ".local/state/classroomsync")
    assert default_data_dir({"XDG_STATE_HOME": "/x"}, site) == "/x/classroomsync"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_data_dir({}, site) == "/var/lib/classroomsync"
    # chDB follows DATA_DIR unless CLICKHOUSE_URL says otherwise.
    assert settings(data_dir="/srv/cs").clickhouse_url == "chdb:///srv/cs/chdb"
