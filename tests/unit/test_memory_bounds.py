"""What a client sends must not grow a server's memory without bound: each cache and table
keyed by request input holds at most a fixed amount, however many distinct values arrive.

(A schema fuzzer's 37,542 requests took a server from ~90 MB to 692 MB. Most of that was
the text-embedding stack, loaded once by the first item with a text field; these are the
structures that kept growing with each new value.)
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.errors import InvalidInputError
from recloop.core.types import Action
from recloop.features.categorical import MAX_VALUES, RARE, CategoricalEncoder
from recloop.features.vw_text import VWText, action_line
from recloop.loop.candidates import MAX_CANDIDATES


def _hostile_action(i: int) -> Action:
    """A new id and ~1.5 KB of new features: what a fuzzer sends with every rank."""
    return Action(f"a{i}", {f"f{j}": f"{i:08d}-{j}-" + "x" * 360 for j in range(4)})


def test_vw_text_holds_a_bounded_amount_whatever_the_actions() -> None:
    text = VWText()
    tracemalloc.start()
    try:
        for i in range(20_000):  # about 30 M characters of distinct action lines
            text.action_line(_hostile_action(i))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # by count alone (100,000 lines) all 20,000 stayed: ~80 MB
    assert held < 40 * 2**20, f"{held / 2**20:.0f} MiB held"
    assert text.cached_chars <= 8_000_000
    assert text.action_line(_hostile_action(7)) == action_line(_hostile_action(7))


def test_vw_text_does_not_cache_one_off_long_lines() -> None:
    text = VWText()
    huge = Action("big", {"blob": "y" * 50_000})
    assert text.action_line(huge) == action_line(huge)
    assert text.cached_chars == 0
    small = Action("s", {"k": "v"})
    text.action_line(small)
    assert text.cached_chars == len(action_line(small))


def test_catalogue_keeps_at_most_max_cached_items_when_items_are_written(
    tmp_path: Path,
) -> None:
    features = {"fields": {"n": "numeric"}, "max_cached_items": 10}
    with Loop.open(tmp_path, start=False, features=features) as loop:
        for i in range(50):
            loop.put_item(f"item-{i}", {"n": i})
        assert loop.items is not None
        assert len(loop.items._cache) <= 10  # every write was kept before, without limit
        assert loop.rank({}, ["item-3", "item-49"]).ranking  # evicted items come back


def test_category_counts_are_bounded_and_keep_frequent_values() -> None:
    encoder = CategoricalEncoder(min_count=2)
    encoder.partial_fit(["acme"] * 5)
    for start in range(0, 60_000, 1_000):  # 60,000 one-off values, in batches
        encoder.partial_fit(f"junk-{i}" for i in range(start, start + 1_000))
    assert len(encoder.counts) <= MAX_VALUES
    assert encoder.encode("acme") == "acme"
    assert encoder.encode("junk-59999") == RARE


def test_a_loop_evaluates_a_bounded_number_of_candidates(tmp_path: Path) -> None:
    with Loop.open(tmp_path, start=False) as loop:
        for i in range(MAX_CANDIDATES):
            loop.register_policy(f"p{i}", "uniform")
        with pytest.raises(InvalidInputError, match=f"at most {MAX_CANDIDATES}"):
            loop.register_policy("one-more", "uniform")
        loop.register_policy("p0", "first-action")  # replacing one is always allowed
        loop.unregister_policy("p1")
        loop.register_policy("one-more", "uniform")  # room again
        assert len(loop.evaluations()["candidates"]) == MAX_CANDIDATES


def test_policy_params_that_cannot_be_stored_are_invalid_input(tmp_path: Path) -> None:
    with (
        Loop.open(tmp_path, start=False) as loop,
        pytest.raises(InvalidInputError, match="64-bit"),
    ):
        loop.register_policy("p", "uniform", {"n": 10**20})  # a 500 over HTTP before
