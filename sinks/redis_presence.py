"""Redis sink: presence changes (internal presence topic) → the teacher view of CONTRACT §4.

Per change, one Lua call (all changes of a batch in one pipeline, one round trip):

- ``{prefix}:presence:{district}:{student}`` — a HASH with exactly ``name``, ``online`` ("1"/"0"), ``app``,
  ``sub_app`` (both "" when offline) and ``ts``, written only if Redis does not hold a newer ``ts`` (equal ts:
  written, so the later record wins); the TTL is refreshed on every write.
- ``{prefix}:class:{district}:{class}`` — SETs: SADD for ``classes_add``, SREM for ``classes_remove``.
- ``deleted`` (roster tombstone or purge): DEL the hash and SREM from ``classes_remove``, whatever the ts.

Set changes come from the roster, whose order the compacted topic keeps per student, so they are applied even
when the hash write is stale. Every step is idempotent, so re-reading a batch (after an outage or a crash) ends
in the same state. While Redis is down the loop retries the same batch and commits nothing past it.

If Redis comes back empty (restarted without persistence), the marker key ``{prefix}:sink:presence-loaded``
is missing: the sink raises :class:`~sinks.shape.SourceRewind` and the loop re-reads the compacted presence
topic from its beginning, so the view is rebuilt in full rather than only from the changes after the outage.
"""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from schemas.internal import InternalFormatError, PresenceChange
from sinks.shape import FlushResult, PermanentSinkError, SourceRewind

# KEYS[1] presence hash; KEYS[2..1+n_add] classes to add to; the rest classes to remove from.
# ARGV: student_id, name, online, app, sub_app, ts, ttl_s, deleted ("1"/"0"), n_add.
# Returns 1 if the hash was written (or deleted), 0 if Redis held a newer ts.
APPLY_CHANGE_LUA = """
local key = KEYS[1]
local student = ARGV[1]
local n_add = tonumber(ARGV[9])
for i = 2, 1 + n_add do redis.call('SADD', KEYS[i], student) end
for i = 2 + n_add, #KEYS do redis.call('SREM', KEYS[i], student) end
if ARGV[8] == '1' then
  redis.call('DEL', key)
  return 1
end
local current = redis.call('HGET', key, 'ts')
if current and tonumber(current) > tonumber(ARGV[6]) then
  return 0
end
redis.call('DEL', key)
redis.call('HSET', key, 'name', ARGV[2], 'online', ARGV[3], 'app', ARGV[4], 'sub_app', ARGV[5],
           'ts', ARGV[6])
redis.call('EXPIRE', key, tonumber(ARGV[7]))
return 1
"""


def presence_key(prefix: str, district_id: str, student_id: str) -> str:
    """CONTRACT §4 presence hash key."""
    return f"{prefix}:presence:{district_id}:{student_id}"


def class_key(prefix: str, district_id: str, class_id: str) -> str:
    """CONTRACT §4 class set key."""
    return f"{prefix}:class:{district_id}:{class_id}"


def change_call(change: PresenceChange, prefix: str, ttl_s: int) -> tuple[list[str], list[str]]:
    """The ``(KEYS, ARGV)`` of :data:`APPLY_CHANGE_LUA` for one change (pure)."""
    online = change.online and not change.deleted
    keys = [presence_key(prefix, change.district_id, change.student_id)]
    adds = () if change.deleted else change.classes_add
    keys += [class_key(prefix, change.district_id, c) for c in adds]
    keys += [class_key(prefix, change.district_id, c) for c in change.classes_remove]
    argv = [
        change.student_id,
        change.name,
        "1" if online else "0",
        change.app if online else "",
        change.sub_app if online else "",
        str(int(change.ts)),
        str(int(ttl_s)),
        "1" if change.deleted else "0",
        str(len(adds)),
    ]
    return keys, argv


class RedisPresenceSink:
    """Buffers presence changes and applies them in one pipeline per flush."""

    name = "redis"

    def __init__(
        self,
        redis: Redis,
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
        if self.rewind_when_empty and self._lost:
            # Redis lost everything it held (e.g. restarted without persistence): this batch alone would
            # leave every other student missing. Re-read the compacted presence topic from its start.
            self._changes.clear()
            raise SourceRewind("Redis holds no presence state: replaying the presence topic")
        stale = len(applied) - sum(1 for r in applied if r == 1)
        written = len(self._changes)
        self._changes.clear()
        return FlushResult(batches=1, rows=written, stale=stale)

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
        for change in self._changes:
            keys, argv = change_call(change, self.prefix, self.ttl_s)
            pipe.evalsha(self._sha, len(keys), *keys, *argv)
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
        return results


def _is_permanent(error: ResponseError) -> bool:
    """A script bug or a key of the wrong type never heals; OOM, READONLY, LOADING… do."""
    text = str(error)
    return text.startswith("WRONGTYPE") or "user_script" in text or "Error running script" in text
