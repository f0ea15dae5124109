"""Interaction logs -> trajectories: history, rewards, session ends, time splits, bad data."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.agents.datasets import build_trajectories, read_interactions, split_by_time
from recloop.core.errors import InvalidInputError
from recloop.simulators.ecommerce import EcommerceConfig, EcommerceWorld, from_ecommerce


def test_trajectories_by_hand(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "user,item,behaviour,timestamp\n"
        "ann,a,view,0\n"
        "ann,b,skip,10\n"
        "bob,a,buy,15\n"
        "ann,c,cart,20\n"
        "ann,d,view,5000\n"  # a new session for ann (gap > 1800 s)
    )
    log = read_interactions(path)
    assert log.item_ids == ("a", "b", "c", "d") and log.user_ids == ("ann", "bob")
    traj = build_trajectories(log, last_n=2)
    pad = traj.pad
    assert pad == 4
    rows = {
        (int(u), int(a)): k for k, (u, a) in enumerate(zip(traj.user, traj.action, strict=True))
    }
    ann_c = rows[(0, 2)]
    # before 'c': ann engaged with a (view); b was a skip -> not in the history
    assert list(traj.history[ann_c]) == [pad, 0]
    assert list(traj.next_history[ann_c]) == [0, 2] and traj.reward[ann_c] == 2.0
    assert traj.done[ann_c]  # the end of ann's first session
    ann_d = rows[(0, 3)]
    assert list(traj.history[ann_d]) == [0, 2]  # history carries over sessions
    assert traj.done[ann_d] and traj.done[rows[(1, 0)]]
    assert not traj.done[rows[(0, 0)]]
    assert np.all(np.diff(traj.timestamp) >= 0)


def test_time_split_puts_the_future_in_test():
    world = EcommerceWorld(EcommerceConfig(n_users=100, n_items=60, seed=5))
    log = from_ecommerce(world.generate(4000), 100, 60)
    traj = build_trajectories(log)
    train, valid, test = split_by_time(traj, 0.1, 0.2)
    assert len(train) + len(valid) + len(test) == len(traj)
    assert train.timestamp.max() <= valid.timestamp.min() <= test.timestamp.min()
    assert len(test) == pytest.approx(0.2 * len(traj), abs=1)
    assert traj.propensity is not None and np.all(traj.propensity > 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user,item,timestamp\nu,i,1\n", "missing column"),
        ("user,item,behaviour,timestamp\n", "no rows"),
        ("user,item,behaviour,timestamp\nu,i,like,1\n", "unknown behaviour"),
        ("user,item,behaviour,timestamp\nu,,view,1\n", "missing values in row 1"),
        ("user,item,behaviour,timestamp\nu,i,view,yesterday-ish\n", "timestamps"),
        ("user,item,behaviour,timestamp,propensity\nu,i,view,1,0\n", "propensity"),
    ],
)
def test_bad_data_names_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        read_interactions(path)


def test_jsonl_and_dates(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(
        '{"user": 1, "item": "x", "behaviour": "buy", "timestamp": "2026-01-01T00:00:00Z"}\n'
        '{"user": 1, "item": "y", "behaviour": "view", "timestamp": "2026-01-01T00:01:00Z"}\n'
    )
    log = read_interactions(path)
    assert log.timestamp[1] - log.timestamp[0] == 60.0
    assert list(log.reward) == [3.0, 1.0]
