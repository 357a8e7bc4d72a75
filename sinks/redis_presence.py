"""Redis sink: presence changes (internal presence topic) → the teacher view of CONTRACT §4.

Per change (all changes of a batch in one pipeline, one round trip):

- ``{prefix}:presence:{district}:{student}`` — a HASH with exactly ``name``, ``online`` ("1"/"0"), ``app``,
  ``sub_app`` (both "" when offline) and ``ts``, written by one Lua call on that key alone, only if Redis does
  not hold a newer ``ts`` (equal ts: written, so the later record wins); the TTL is refreshed on every write.
- ``{prefix}:class:{district}:{class}`` — SETs: SADD for ``classes_add``, SREM for ``classes_remove``, one
  command per set, sent before the hash write.
- ``deleted`` (roster tombstone or purge): DEL the hash (the same script) and SREM from ``classes_remove``,
  whatever the ts.

What is atomic: each hash write (compare ``ts``, replace the five fields, set the TTL) and each set update.
A change's set updates and its hash write are separate commands, because on a Redis Cluster (``REDIS_URL=
redis+cluster://…``) the contract's key names put them in different hash slots and one script may not touch
keys of two slots; the same split runs on a single server, so both behave alike. A reader between them can see
a student in a class set whose hash is not written yet (the teacher view shows them without activity) —
never a mix of two changes in one hash. Last writer wins per hash by ``ts``, whatever order the pipeline's
per-node parts arrive in.

Set changes come from the roster, whose order the compacted topic keeps per student, so they are applied even
when the hash write is stale. Every step is idempotent, so re-reading a batch (after an outage or a crash) ends
in the same state. While Redis is down the loop retries the same batch and commits nothing past it.

If Redis comes back empty (restarted without persistence), the marker key ``{prefix}:sink:presence-loaded``
is missing: the sink raises :class:`~sinks.shape.SourceRewind` and the loop re-reads the compacted presence
topic from its beginning, so the view is rebuilt in full rather than only from the changes after the outage.

On a Redis Cluster a failover is handled the same way. Replication is asynchronous, so a master that crashes
can take with it writes it acknowledged a moment earlier (whose offsets the sink may already have committed);
the replica that takes over does not have them. The sink remembers the cluster's set of masters as the client
sees it (the client refreshes it on every MOVED or connection error); when it changes, the next flush ends in a
:class:`~sinks.shape.SourceRewind`, and replaying the compacted presence topic re-applies whatever was lost.
Replays are harmless (``ts`` compare), so the cost is time: one pass over the topic (see docs/scaling.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from csync.redis_client import AnyRedis
from schemas.internal import InternalFormatError, PresenceChange
from sinks.shape import FlushResult, PermanentSinkError, SourceRewind

# KEYS[1] the presence hash. ARGV: name, online, app, sub_app, ts, ttl_s, deleted ("1"/"0").
# Returns 1 if the hash was written (or deleted), 0 if Redis held a newer ts. One key: one hash slot.
APPLY_CHANGE_LUA = """
local key = KEYS[1]
if ARGV[7] == '1' then
  redis.call('DEL', key)
  return 1
end
local current = redis.call('HGET', key, 'ts')
if current and tonumber(current) > tonumber(ARGV[5]) then
  return 0
end
redis.call('DEL', key)
redis.call('HSET', key, 'name', ARGV[1], 'online', ARGV[2], 'app', ARGV[3], 'sub_app', ARGV[4],
           'ts', ARGV[5])
redis.call('EXPIRE', key, tonumber(ARGV[6]))
return 1
"""


def presence_key(prefix: str, district_id: str, student_id: str) -> str:
    """CONTRACT §4 presence hash key."""
    return f"{prefix}:presence:{district_id}:{student_id}"


def class_key(prefix: str, district_id: str, class_id: str) -> str:
    """CONTRACT §4 class set key."""
    return f"{prefix}:class:{district_id}:{class_id}"


@dataclass(frozen=True, slots=True)
class ChangeCalls:
    """The Redis commands of one change: set updates, then the hash script (pure data)."""

    hash_key: str
    argv: list[str]
    set_add: list[str]
    set_remove: list[str]
    student_id: str


def change_call(change: PresenceChange, prefix: str, ttl_s: int) -> ChangeCalls:
    """The commands of one change: classes to add to / remove from, and :data:`APPLY_CHANGE_LUA`'s
    ``ARGV`` for the presence hash (pure)."""
    online = change.online and not change.deleted
    adds = () if change.deleted else change.classes_add
    argv = [
        change.name,
        "1" if online else "0",
        change.app if online else "",
        change.sub_app if online else "",
        str(int(change.ts)),
        str(int(ttl_s)),
        "1" if change.deleted else "0",
    ]
    return ChangeCalls(
        hash_key=presence_key(prefix, change.district_id, change.student_id),
        argv=argv,
        set_add=[class_key(prefix, change.district_id, c) for c in adds],
        set_remove=[class_key(prefix, change.district_id, c) for c in change.classes_remove],
        student_id=change.student_id,
    )


class RedisPresenceSink:
    """Buffers presence changes and applies them in one pipeline per flush."""

    name = "redis"

    def __init__(
        self,
        redis: AnyRedis,
        *,
        key_prefix: str = "cs",
        ttl_s: int = 24 * 3600,
        rewind_when_empty: bool = True,
    ) -> None:
        self.redis = redis
        self.rewind_when_empty = rewind_when_empty
        self.prefix = key_prefix
        self.ttl_s = ttl_s
        self._changes: list[PresenceChange] = []
        self._sha: str | None = None
        self._lost = False
        self._masters: frozenset[str] | None = None

    def add(self, record: ConsumerRecord[Any, Any]) -> None:
        """Buffer one presence change."""
        if record.value is None:  # compaction tombstone of the internal topic: nothing to apply
            return
        try:
            self._changes.append(PresenceChange.decode(record.value))
        except InternalFormatError as exc:
            raise PermanentSinkError(
                f"presence record {record.partition}@{record.offset}: {exc}"
            ) from exc

    def add_change(self, change: PresenceChange) -> None:
        """Buffer one already-decoded change."""
        self._changes.append(change)

    def __len__(self) -> int:
        return len(self._changes)

    def discard(self) -> None:
        self._changes.clear()

    async def on_assign(self, partitions: set[int]) -> None:
        """Nothing per partition: the ts compare makes replays harmless."""

    async def flush(self) -> FlushResult:
        """Apply the buffer in one pipelined round trip; keep it on any failure."""
        if not self._changes:
            return FlushResult()
        self._lost = False
        try:
            applied = await self._apply()
        except NoScriptError:
            # Redis restarted and lost its script cache: load the script again, then retry once.
            self._sha = None
            applied = await self._apply()
        failover = self._masters_changed()
        if self.rewind_when_empty and (self._lost or failover):
            # Redis lost everything it held (e.g. restarted without persistence): this batch alone would
            # leave every other student missing. Re-read the compacted presence topic from its start.
            self._changes.clear()
            why = "a Redis Cluster failover" if failover else "Redis holds no presence state"
            raise SourceRewind(f"{why}: replaying the presence topic")
        stale = len(applied) - sum(1 for r in applied if r == 1)
        written = len(self._changes)
        self._changes.clear()
        return FlushResult(batches=1, rows=written, stale=stale)

    def _masters_changed(self) -> bool:
        """True when a cluster's masters differ from those of the previous flush (a failover)."""
        if not isinstance(self.redis, RedisCluster):
            return False
        masters = frozenset(node.name for node in self.redis.get_primaries())
        changed = self._masters is not None and masters != self._masters
        self._masters = masters
        return changed

    @property
    def marker_key(self) -> str:
        """Set by this sink; its absence means Redis lost its data (restart without persistence)."""
        return f"{self.prefix}:sink:presence-loaded"

    async def _apply(self) -> list[Any]:
        if self._sha is None:
            self._sha = str(await self.redis.script_load(APPLY_CHANGE_LUA))
        pipe = self.redis.pipeline(transaction=False)
        # SET NX GET: returns None exactly when the marker was missing, i.e. Redis is empty of our state.
        pipe.set(self.marker_key, "1", nx=True, get=True)
        scripts: list[int] = []  # index in the pipeline of each change's hash write
        for change in self._changes:
            calls = change_call(change, self.prefix, self.ttl_s)
            for key in calls.set_add:
                pipe.sadd(key, calls.student_id)
            for key in calls.set_remove:
                pipe.srem(key, calls.student_id)
            scripts.append(len(pipe))
            # EVALSHA by name: redis-py blocks the pipeline method on a cluster, not the command itself,
            # which it routes by its one key like any other.
            pipe.execute_command("EVALSHA", self._sha, 1, calls.hash_key, *calls.argv)
        marker, *results = await pipe.execute(raise_on_error=False)
        if isinstance(marker, Exception):
            raise marker
        # Remembered across a NOSCRIPT retry: the first attempt already set the marker again.
        self._lost = self._lost or marker is None
        for result in results:
            if isinstance(result, NoScriptError):
                raise result
            if isinstance(result, ResponseError) and _is_permanent(result):
                raise PermanentSinkError(f"Redis rejected a presence change: {result}")
            if isinstance(result, Exception):
                raise result
        return [results[i - 1] for i in scripts]


def _is_permanent(error: ResponseError) -> bool:
    """A script bug or a key of the wrong type never heals; OOM, READONLY, LOADING… do."""
    text = str(error)
    return text.startswith("WRONGTYPE") or "user_script" in text or "Error running script" in text
