"""The Open Bandit Dataset sample read without obp, and the ZOZOTOWN BernoulliTS distribution.

Most tests need obp's bundled data (``pip install --no-deps --ignore-requires-python
obp==0.5.7``) and skip without it; the parser and error-path tests run everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from recloop.evaluation import obd
from recloop.evaluation.obd import (
    BEHAVIOR_POLICIES,
    CAMPAIGNS,
    INSTALL_HINT,
    ObdLog,
    bts_action_dist,
    load_obd,
    obd_available,
    on_policy_value,
)

needs_obd = pytest.mark.skipif(
    not obd_available(), reason=f"obp's OBD sample is not installed ({INSTALL_HINT})"
)
N_ITEMS = {"all": 80, "men": 34, "women": 46}


@pytest.fixture(scope="module")
def random_all() -> ObdLog:
    return load_obd("random", "all")


@needs_obd
@pytest.mark.parametrize("campaign", CAMPAIGNS)
@pytest.mark.parametrize("behavior_policy", BEHAVIOR_POLICIES)
def test_log_shapes_dtypes_and_ranges(behavior_policy: str, campaign: str) -> None:
    log = load_obd(behavior_policy, campaign)
    n = log.n_rounds
    assert n == 10_000
    assert (log.n_actions, log.len_list) == (N_ITEMS[campaign], 3)
    assert log.action.dtype == np.int64 and log.action.shape == (n,)
    assert log.position.dtype == np.int64 and log.position.shape == (n,)
    assert log.reward.dtype == np.float64 and log.reward.shape == (n,)
    assert log.pscore.dtype == np.float64 and log.pscore.shape == (n,)
    assert log.context.dtype == np.float64 and log.context.shape[0] == n
    assert log.action_context.shape == (log.n_actions, 4)
    assert log.action.min() >= 0 and log.action.max() < log.n_actions
    assert set(np.unique(log.position).tolist()) == {0, 1, 2}
    assert set(np.unique(log.reward).tolist()) <= {0.0, 1.0}
    assert np.all(log.pscore > 0.0) and np.all(log.pscore <= 1.0)
    assert set(np.unique(log.context).tolist()) <= {0.0, 1.0}
    if behavior_policy == "random":  # uniform over the catalogue, per position
        np.testing.assert_allclose(log.pscore, 1.0 / log.n_actions)
    assert not log.action.flags.writeable
    assert on_policy_value(behavior_policy, campaign) == pytest.approx(log.reward.mean())


@needs_obd
def test_on_policy_values_match_obp() -> None:
    # Values of obp's OpenBanditDataset.calc_on_policy_policy_value_estimate on the sample.
    assert on_policy_value("random", "all") == pytest.approx(0.0038)
    assert on_policy_value("bts", "all") == pytest.approx(0.0042)


@needs_obd
@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_bts_action_dist_is_a_ranking_distribution(campaign: str) -> None:
    dist = bts_action_dist(campaign, n_rounds=7, n_sim=20_000)
    assert dist.shape == (7, N_ITEMS[campaign], 3)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)  # each position holds one item
    assert np.all(dist.sum(axis=2) <= 1.0 + 1e-12)  # an item fills at most one position
    assert np.all(dist >= 0.0)
    np.testing.assert_array_equal(dist[0], dist[-1])
    assert not dist.flags.writeable
    np.testing.assert_array_equal(dist[0], bts_action_dist(campaign, n_rounds=1, n_sim=20_000)[0])


@needs_obd
def test_ips_of_bts_from_random_log_is_near_its_on_policy_value(random_all: ObdLog) -> None:
    dist = bts_action_dist("all", n_rounds=random_all.n_rounds)
    rows = np.arange(random_all.n_rounds)
    weights = dist[rows, random_all.action, random_all.position] / random_all.pscore
    ips = float(np.mean(random_all.reward * weights))
    truth = on_policy_value("bts", "all")
    assert abs(ips - truth) <= 0.3 * truth, (ips, truth)


@needs_obd
def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="behavior_policy"):
        load_obd("greedy", "all")
    with pytest.raises(ValueError, match="campaign"):
        bts_action_dist("kids", n_rounds=1)


def test_missing_data_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(INSTALL_HINT)):
        load_obd("random", "all", data_path=tmp_path)
    monkeypatch.setattr(obd, "_obp_package_dir", lambda: None)
    assert not obd_available()
    with pytest.raises(FileNotFoundError, match=re.escape(INSTALL_HINT)):
        load_obd()
    with pytest.raises(FileNotFoundError, match=re.escape(INSTALL_HINT)):
        bts_action_dist("all", n_rounds=1)


def test_prior_parser_reads_block_lists() -> None:
    text = "all:\n  alpha:\n    - 47.0\n    - 8.0  # c\n  beta:\n    - 12198.0\n    - 3566.0\n"
    parsed = obd._parse_prior(text)
    assert parsed == {"all": {"alpha": [47.0, 8.0], "beta": [12198.0, 3566.0]}}


@needs_obd
def test_recloop_estimators_cover_bts_on_policy_value(random_all: ObdLog) -> None:
    """Real logged data: evaluate Bernoulli TS from the uniform-random log with recloop's
    estimators (position as context); its on-policy average lies in the 95% intervals."""
    from recloop.evaluation.estimators import evaluate
    from recloop.evaluation.offpolicy import IPS, SNIPS

    data = random_all.bandit_data()
    dist = bts_action_dist("all", n_rounds=random_all.n_rounds)
    truth = on_policy_value("bts", "all")
    rows, overlap = evaluate(data, dist, [IPS(), SNIPS()])
    for row in rows:
        assert row.interval.low <= truth <= row.interval.high, (row, truth)
        assert abs(row.interval.value - truth) < 0.3 * truth
    assert 0.05 < overlap.ess_ratio < 0.5  # a deterministic-ish policy from uniform logs
