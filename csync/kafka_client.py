"""Security options of every Kafka client the project creates, from one set of settings.

Every ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient`` of ClassroomSync is built as
``AIOKafkaX(bootstrap_servers=settings.kafka_bootstrap, **kafka_options(settings), ...)``, so TLS and SASL
(``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_*``) apply to the worker, the sinks, the collector,
the simulator, the roster loader, the lag monitor, purge and topic administration alike.

Every producer adds :func:`producer_options`: ``acks="all"`` and idempotence, so a record is acknowledged only
once ``min.insync.replicas`` copies hold it, and a retry after a leader change never writes it twice. Those
retries are counted (``csync_producer_retries_total``) from aiokafka's sender, which logs each one. Every
consumer of a topic the worker writes adds :func:`consumer_options` (``read_committed``: the worker writes in
transactions, see ``streams.engine``).

Promises: the password is read from ``KAFKA_SASL_PASSWORD_FILE`` when set (a mounted Secret, re-read at each
client creation so a rotated Secret is used by the next connection), never logged and never put in an error
message; :func:`check_credentials` turns a rejected login into one clear :class:`KafkaSecurityError` instead of
aiokafka's generic "Unable to bootstrap".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from csync import metrics
from csync.settings import Settings, SettingsError


class KafkaSecurityError(RuntimeError):
    """Kafka refused the TLS handshake or the SASL login; the message says which setting to check."""


def read_secret(path: str, name: str) -> str:
    """The content of a secret file without its trailing newline (``name`` is the setting, for errors)."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"{name}={path!r} cannot be read: {exc.strerror}") from exc


def sasl_password(settings: Settings) -> str:
    """The SASL password: the file's content when ``KAFKA_SASL_PASSWORD_FILE`` is set, else the variable."""
    if settings.kafka_sasl_password_file:
        return read_secret(settings.kafka_sasl_password_file, "KAFKA_SASL_PASSWORD_FILE")
    return settings.kafka_sasl_password


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A TLS client context: the CA bundle (or the system store), the optional client certificate."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile or None,
        certfile=settings.kafka_ssl_certfile or None,
        keyfile=settings.kafka_ssl_keyfile or None,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def kafka_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments every aiokafka client takes for TLS and SASL (empty for ``PLAINTEXT``)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {}
    if protocol == "PLAINTEXT":
        return options
    options["security_protocol"] = protocol
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL_"):
        if not settings.kafka_sasl_username:
            raise SettingsError(f"KAFKA_SASL_USERNAME is required with {protocol}")
        if not (settings.kafka_sasl_password or settings.kafka_sasl_password_file):
            raise SettingsError(
                f"KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD) is required with {protocol}"
            )
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def consumer_options(settings: Settings) -> dict[str, Any]:
    """:func:`kafka_options` plus ``isolation_level="read_committed"``: what every consumer of a topic the
    worker writes uses (activity, state, usage-cells, presence, DLQ). The worker writes each batch in a
    Kafka transaction; a reader of uncommitted records would see the batches of a fenced (stalled)
    worker, which its transaction never committed, and aborted ones."""
    return {**kafka_options(settings), "isolation_level": "read_committed"}


def producer_options(settings: Settings) -> dict[str, Any]:
    """:func:`kafka_options` plus what every producer of the project uses: ``acks="all"`` and idempotence
    (aiokafka then retries a batch until it is written once, through leader changes)."""
    _count_retries()
    return {**kafka_options(settings), "acks": "all", "enable_idempotence": True}


class _RetryCounter(logging.Handler):
    """Counts aiokafka's retry warnings (a produce request failed and its batches are sent again)."""

    RETRY_MESSAGES = ("Got error produce response", "Cannot send")

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING and str(record.msg).startswith(self.RETRY_MESSAGES):
            metrics.PRODUCER_RETRIES.inc()


def _count_retries() -> None:
    sender = logging.getLogger("aiokafka.producer.sender")
    if not any(isinstance(h, _RetryCounter) for h in sender.handlers):
        sender.addHandler(_RetryCounter())


async def check_credentials(settings: Settings, timeout_s: float = 15.0) -> None:
    """Connect to the first bootstrap server that answers and log in as a client would.

    Raises :class:`KafkaSecurityError` at once when the broker rejects the TLS handshake or the login
    (a wrong password is not retried: it will not get better). A broker that cannot be reached is left
    to the clients' own retries; this check then returns.
    """
    options = kafka_options(settings)
    if not options:
        return
    for address in settings.kafka_bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host.strip("[]"), int(port), request_timeout_ms=10_000, **options),
                timeout_s,
            )
        except (TimeoutError, OSError) as exc:
            if isinstance(exc, ssl.SSLError):
                raise KafkaSecurityError(_tls_message(settings, address, exc)) from None
            continue
        except KafkaError as exc:
            raise KafkaSecurityError(_login_message(settings, address, exc)) from None
        conn.close()
        return


def _tls_message(settings: Settings, address: str, exc: ssl.SSLError) -> str:
    return (
        f"TLS handshake with Kafka at {address} failed ({exc.reason or exc}): check KAFKA_SSL_CAFILE "
        f"(now {settings.kafka_ssl_cafile or 'the system trust store'}) and KAFKA_SECURITY_PROTOCOL"
    )


def _login_message(settings: Settings, address: str, exc: KafkaError) -> str:
    # The broker's message names the mechanism, never the password; ours names the settings to check.
    return (
        f"Kafka at {address} rejected the {settings.kafka_sasl_mechanism} login of user "
        f"{settings.kafka_sasl_username!r}: {exc}. Check KAFKA_SASL_USERNAME, KAFKA_SASL_MECHANISM and "
        f"KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD)"
    )
