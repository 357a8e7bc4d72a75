"""Every Kafka and Redis client the project creates gets the security settings.

A client built without ``**kafka_options(settings)`` would silently talk PLAINTEXT to a district's SASL_SSL
cluster (and fail there, or worse, succeed against a misconfigured one); a Redis client built around
:mod:`csync.redis_client` would ignore ``REDIS_PASSWORD_FILE`` and the CA. This reads the source of every
package and fails on such a call, naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("csync", "schemas", "producers", "streams", "sinks", "ops", "privacy", "analyst")
# ``new_reader`` and ``topic_configs`` (privacy.kafka_scan) build clients from their ``**security``.
KAFKA_CLIENTS = {
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaAdminClient",
    "new_reader",
    "topic_configs",
}
# kafka_scan's helpers take the options from their callers as ``**security``; producers take
# ``**producer_options`` (security options included).
SECURITY_SPREADS = {"kafka_options", "producer_options", "consumer_options", "security"}
# Consumers that may read uncommitted records, and why. Every other consumer reads a topic the
# worker writes in transactions and must spread ``consumer_options`` (read_committed).
READ_UNCOMMITTED_OK = {
    ("streams/keys.py", "the day-keys topic is written without transactions"),
    ("ops/lag_monitor.py", "offsets only: lag is measured to the high watermark"),
    ("privacy/kafka_scan.py", "the factory: its callers pass the options"),
    ("producers/roster_loader.py", "reads the roster topic, which the worker never writes"),
}
# The factory itself, and the secured test stack's readiness ping (it checks the server it just started).
FACTORY_EXEMPT = {ROOT / "csync" / "redis_client.py", ROOT / "csync" / "stack_tls.py"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def calls() -> list[tuple[Path, ast.Call]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    found.append((path, node))
    return found


def test_every_kafka_client_spreads_the_security_options() -> None:
    missing = []
    seen = 0
    for path, call in calls():
        if _name(call.func) not in KAFKA_CLIENTS:
            continue
        seen += 1
        spreads = {_name(k.value) for k in call.keywords if k.arg is None}
        if not spreads & SECURITY_SPREADS:
            missing.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert seen >= 15, "the scan found too few clients: is it still reading the packages?"
    assert not missing, f"Kafka clients without **kafka_options(settings): {missing}"


def test_consumers_of_the_worker_s_topics_read_committed() -> None:
    """The worker writes every batch in a transaction: a reader of uncommitted records would count
    a fenced worker's aborted outputs (usage twice, DLQ records twice, a re-routed event twice)."""
    exempt = {path for path, _why in READ_UNCOMMITTED_OK}
    uncommitted = []
    seen = 0
    for path, call in calls():
        if _name(call.func) not in {"AIOKafkaConsumer", "new_reader"}:
            continue
        seen += 1
        spreads = {_name(k.value) for k in call.keywords if k.arg is None}
        if "consumer_options" not in spreads and str(path.relative_to(ROOT)) not in exempt:
            uncommitted.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert seen >= 8, "the scan found too few consumers: is it still reading the packages?"
    assert not uncommitted, f"consumers without **consumer_options(settings): {uncommitted}"


def test_redis_clients_come_from_the_factory() -> None:
    direct = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path, call in calls()
        if _name(call.func) in {"from_url", "Redis", "StrictRedis"}
        and path not in FACTORY_EXEMPT
        and "redis" in ast.unparse(call.func).lower()
    ]
    assert not direct, f"Redis clients not made by csync.redis_client: {direct}"
