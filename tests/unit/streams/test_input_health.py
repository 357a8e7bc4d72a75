"""When the worker may close silent devices: only after USAGE_CLOSE_AFTER_S of watched, healthy input."""

from __future__ import annotations

from streams.close_policy import PROBE_GAP_MS, InputHealth, closes, settled_ends

CLOSE_MS = 6_000
T0 = 1_000_000


def probe_every_second(health: InputHealth, start: int, end: int) -> list[tuple[int, bool]]:
    """Answered probes once a second from ``start`` to ``end``: (time, safe) of each."""
    return [(t, health.answered(t)) for t in range(start, end + 1, 1000)]


def first_safe(answers: list[tuple[int, bool]]) -> int | None:
    return next((t for t, safe in answers if safe), None)


def test_closes_wait_a_full_window_after_the_start() -> None:
    health = InputHealth(CLOSE_MS, T0)
    assert first_safe(probe_every_second(health, T0 + 1000, T0 + 20_000)) == T0 + CLOSE_MS


def test_a_failed_probe_starts_the_window_again() -> None:
    health = InputHealth(CLOSE_MS, T0)
    probe_every_second(health, T0 + 1000, T0 + 10_000)
    assert health.failed(T0 + 10_500) is True  # news: logged
    assert health.failed(T0 + 10_900) is False  # the same outage
    answers = probe_every_second(health, T0 + 11_000, T0 + 30_000)
    assert first_safe(answers) == T0 + 10_900 + CLOSE_MS + 100  # the first probe a window after


def test_a_gap_between_probes_starts_the_window_again() -> None:
    """The loop stuck awaiting acks while the broker was away never probed: no failure was seen,
    but nobody watched the input either."""
    health = InputHealth(CLOSE_MS, T0)
    assert probe_every_second(health, T0 + 1000, T0 + 10_000)[-1] == (T0 + 10_000, True)
    back = T0 + 10_000 + PROBE_GAP_MS + 1
    answers = probe_every_second(health, back, back + 20_000)
    assert first_safe(answers) == back + CLOSE_MS


def test_probes_within_the_gap_keep_the_window() -> None:
    health = InputHealth(CLOSE_MS, T0)
    times = [T0 + 1000, T0 + 1000 + PROBE_GAP_MS, T0 + 1000 + 2 * PROBE_GAP_MS]
    assert [health.answered(t) for t in times] == [False, True, True]


async def test_settled_ends_only_after_a_healthy_window_and_never_on_failure() -> None:
    health = InputHealth(CLOSE_MS, T0)
    ends = {0: 10, 1: 20}

    async def answer(partitions: list[int]) -> dict[int, int]:
        return {p: ends[p] for p in partitions}

    async def fail(partitions: list[int]) -> dict[int, int]:
        raise ConnectionError("broker away")

    assert await settled_ends(health, answer, [0, 1], T0 + 1000) == {}  # window not full yet
    for t in range(T0 + 2000, T0 + CLOSE_MS, 1000):
        await settled_ends(health, answer, [0, 1], t)
    assert await settled_ends(health, answer, [0, 1], T0 + CLOSE_MS) == ends
    assert await settled_ends(health, fail, [0, 1], T0 + CLOSE_MS + 1000) == {}
    assert await settled_ends(health, answer, [0], T0 + CLOSE_MS + 2000) == {}  # window restarted


def test_a_batch_closes_only_when_it_reads_to_the_settled_end() -> None:
    assert closes(0, 10, {0: 10})
    assert closes(0, 11, {0: 10})
    assert not closes(0, 9, {0: 10})  # a backlog: arrivals may still be pending
    assert not closes(1, 50, {0: 10})  # no settled end for it
