"""The batch log's records and recovery plan: replay every continuing intent, emit none."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.batch_log import Intent, decode_intent, encode_intent, recovery_plan

INTENTS = st.builds(
    Intent,
    st.integers(0, 63),
    st.integers(0, 10**12),
    st.integers(-1, 10**12),
    st.integers(0, 10**12),
    st.integers(-1, 10**12),
    st.integers(0, 2**62),
    st.booleans(),
    st.integers(0, 10**6),
)


@given(INTENTS)
def test_intents_round_trip(intent: Intent) -> None:
    assert decode_intent(encode_intent(intent)) == intent


def _chain(sizes: list[tuple[int, int]]) -> list[Intent]:
    act, ros, out = 5, 0, []
    for n, (a, r) in enumerate(sizes):
        out.append(Intent(0, act, act + a - 1, ros, ros + r - 1, n, False, 0 if a else 1))
        act, ros = act + a, ros + r
    return out


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), max_size=12), st.data())
def test_the_plan_replays_the_chain(sizes: list[tuple[int, int]], data: st.DataObject) -> None:
    chain = _chain(sizes)
    # stale duplicates (a log written before the fencing transactions) anywhere in the log
    # (of batches that read input: a timer batch's duplicate continues the chain like it)
    log = list(chain)
    reading = [i for i in chain if i.act_first <= i.act_last or i.roster_first <= i.roster_last]
    for dup in data.draw(st.lists(st.sampled_from(reading), max_size=4)) if reading else []:
        log.insert(data.draw(st.integers(log.index(dup) + 1, len(log))), dup)  # after the original
    assert recovery_plan(log, 5, 0) == chain


def test_a_log_that_does_not_continue_the_snapshot_replays_nothing() -> None:
    chain = _chain([(3, 0), (2, 1)])
    assert recovery_plan(chain, 100, 0) == []
    assert recovery_plan(chain, 8, 0) == [chain[1]]
