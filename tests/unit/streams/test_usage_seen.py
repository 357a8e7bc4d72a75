"""A device's remembered event ids (``DeviceUsage.seen``): pruning keeps exactly the entries inside the
lateness window, in arrival order, whatever the ids and ts."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from streams.usage import _seen_entries, _seen_since

ID_CHARS = string.ascii_letters + string.digits + "_-"
entries = st.lists(
    st.tuples(
        st.text(ID_CHARS, min_size=1, max_size=64),
        st.integers(min_value=-(10**13), max_value=10**13),
    ),
    max_size=40,
)


def seen_of(items: list[tuple[str, int]]) -> str:
    return "".join(f" {i}:{t}" for i, t in items)


@given(entries, st.integers(min_value=-(10**13), max_value=10**13))
def test_prune_keeps_the_entries_at_or_after_since_in_order(
    items: list[tuple[str, int]], since: int
) -> None:
    pruned = _seen_since(seen_of(items), since)
    assert pruned == seen_of([(i, t) for i, t in items if t >= since])
    assert list(_seen_entries(pruned)) == [(i, t) for i, t in items if t >= since]


def test_prune_of_nothing_and_of_everything() -> None:
    assert _seen_since("", 5) == ""
    assert _seen_since(" a:1 b:2", 3) == ""
    assert _seen_since(" a:1 b:2", 1) == " a:1 b:2"
    assert _seen_since(" a:-5 b:2 c:-7", -6) == " a:-5 b:2"
