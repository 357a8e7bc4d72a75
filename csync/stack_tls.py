"""A secured local stack for tests and for trying TLS/SASL settings on a laptop: Kafka with a SASL_SSL
listener and redis-server on a TLS port with a password.

- :func:`make_pki` writes a throw-away CA and a server certificate for ``localhost``/``127.0.0.1``
  (``cryptography``; keys unencrypted PKCS#8, files readable by the owner only);
- :func:`start_secure_kafka` starts the project's KRaft broker (:func:`csync.stack.start_kafka`) with a
  second listener ``SASL_SSL`` (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN) whose SCRAM users are created at
  format time (``kafka-storage format --add-scram``, KIP-900); the PLAINTEXT listener stays on loopback
  for the broker's own readiness check;
- :func:`start_tls_redis` starts redis-server with ``--port 0 --tls-port P --requirepass …``: only TLS
  with the password is served.

Nothing here is for production: a district brings its own CA, brokers and Redis (docs/deploy.md).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from csync.stack import (
    ServiceInfo,
    _tail,
    _wait,
    free_port,
    say,
    spawn,
    start_kafka,
)
from csync.stack_redis import ensure_redis_server, redis_version

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Pki:
    """Paths of a CA certificate and of one server's certificate and key (PEM)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path, days: int = 2) -> Pki:
    """A CA and a server certificate valid for ``localhost`` and ``127.0.0.1`` (``days`` long)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("classroomsync test CA"))
        .issuer_name(_name("classroomsync test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(alt, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = cert.public_bytes(serialization.Encoding.PEM) + pki.ca_cert.read_bytes()
    pki.server_cert.write_bytes(chain)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pki.server_key.touch(mode=0o600)
    pki.server_key.write_bytes(key_pem)
    return pki


def _secure_properties(pki: Pki, port: int, sasl_port: int, controller_port: int) -> str:
    keystore = pki.server_key.parent / "broker-keystore.pem"
    keystore.touch(mode=0o600)
    keystore.write_bytes(pki.server_key.read_bytes() + pki.server_cert.read_bytes())
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    lines = [
        "",
        "# --- added by csync.stack_tls: a SASL_SSL listener for clients",
        f"listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port},"
        f"CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port}",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=" + ",".join(SCRAM_MECHANISMS),
        *(f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config={scram}" for m in SCRAM_MECHANISMS),
        "listener.name.sasl_ssl.ssl.keystore.type=PEM",
        f"listener.name.sasl_ssl.ssl.keystore.location={keystore}",
        "listener.name.sasl_ssl.ssl.client.auth=none",
        "",
    ]
    return "\n".join(lines)


def start_secure_kafka(
    data_root: Path, pki: Pki, users: dict[str, str], timeout_s: float = 120.0
) -> tuple[ServiceInfo, int]:
    """A broker whose SASL_SSL listener knows ``users`` (name → password) for both SCRAM mechanisms;
    returns the service and the SASL_SSL port."""
    port, sasl_port, controller_port = free_port(), free_port(), free_port()
    format_args: list[str] = []
    for name, password in users.items():
        for mechanism in SCRAM_MECHANISMS:
            format_args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    info = start_kafka(
        data_root,
        port,
        controller_port,
        timeout_s=timeout_s,
        extra_properties=_secure_properties(pki, port, sasl_port, controller_port),
        format_args=tuple(format_args),
    )
    return info, sasl_port


def tls_redis_ping(port: int, pki: Pki, password: str) -> bool:
    """True when redis-server answers PING over TLS with ``password``."""
    import redis

    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        ssl=True,
        ssl_ca_certs=str(pki.ca_cert),
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_tls_redis(data_root: Path, pki: Pki, password: str) -> ServiceInfo:
    """redis-server serving only TLS (no plain port) and only with ``password``; no persistence."""
    binary = ensure_redis_server()
    home = data_root / "redis-tls"
    home.mkdir(parents=True, exist_ok=True)
    log = home / "redis.log"
    port = free_port()
    conf = home / "redis.conf"
    # The password goes in a 0600 config file, not on the command line (ps shows arguments).
    conf.touch(mode=0o600)
    conf.write_text(
        f"bind 127.0.0.1\nport 0\ntls-port {port}\ntls-cert-file {pki.server_cert}\n"
        f"tls-key-file {pki.server_key}\ntls-ca-cert-file {pki.ca_cert}\ntls-auth-clients no\n"
        f'requirepass "{password}"\ndir {home}\nlogfile {log}\nsave ""\nappendonly no\n'
    )
    say(f"starting redis-server {redis_version(binary)} with TLS on 127.0.0.1:{port}")
    proc = spawn([binary, str(conf)])
    _wait(
        lambda: tls_redis_ping(port, pki, password),
        20,
        lambda: f"redis-server (TLS) did not answer:\n{_tail(log)}",
        proc,
    )
    return ServiceInfo(
        "redis", proc.pid, port, f"127.0.0.1:{port}", redis_version(binary), str(home), str(log)
    )
