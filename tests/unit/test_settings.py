"""Settings: defaults < TOML < RECLOOP_* env < explicit overrides; loops inherit."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.errors import InvalidInputError, UnknownLoopError
from recloop.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = load_settings()
    assert (s.exp_unit_seconds, s.epsilon, s.default_reward, s.explorer) == (
        10.0,
        0.2,
        0.0,
        "epsilon-greedy",
    )
    assert s.loop_names() == ["default"]
    assert s.loop().full_vw_args() == "--cb_adf --cb_type mtr -l 0.05 --clip_p 0.1 -q CA"


def test_env_overrides_toml_and_loops_inherit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text("epsilon = 0.3\nexp_unit_seconds = 30\n[loops.feed]\nexplorer = 'softmax'\n")
    for name, value in {
        "RECLOOP_EPSILON": "0.05",
        "RECLOOP_DEFAULT_REWARD": "-1",
        "RECLOOP_CHECKPOINT_EVERY_EXAMPLES": "7",
        "RECLOOP_CHECKPOINT_EVERY_SECONDS": "2.5",
        "RECLOOP_DATA_DIR": str(tmp_path / "d"),
        "RECLOOP_API_KEY": "k",
    }.items():
        monkeypatch.setenv(name, value)
    s = load_settings(cfg)
    assert s.epsilon == 0.05 and s.exp_unit_seconds == 30.0 and s.default_reward == -1.0
    assert s.checkpoint_every_examples == 7 and s.checkpoint_every_seconds == 2.5
    assert s.data_dir == tmp_path / "d"
    assert s.api_key is not None and s.api_key.get_secret_value() == "k"
    feed = s.loop("feed")
    assert feed.explorer == "softmax" and feed.epsilon == 0.05 and feed.exp_unit_seconds == 30
    assert load_settings(cfg, epsilon=0.5).epsilon == 0.5  # explicit beats env
    monkeypatch.setenv("RECLOOP_EXP_UNIT_SECONDS", "3")
    assert load_settings(cfg).exp_unit_seconds == 3.0
    with pytest.raises(UnknownLoopError):
        s.loop("nope")


def test_shipped_example_config_loads() -> None:
    s = load_settings(ROOT / "examples" / "recloop.toml")
    assert s.loop_names() == ["default", "home-feed", "checkout-banner", "news-drn", "articles"]
    assert s.loop("home-feed").reward_aggregation == "sum"
    assert s.loop("checkout-banner").default_action_id == "free-shipping"
    drn = s.loop("news-drn")
    assert drn.learner == "drn" and drn.drn["major_every"] == 200
    assert drn.exp_unit_seconds == 30.0 and drn.epsilon == 0.2  # the rest inherited
    articles = s.loop("articles").features
    assert articles.fields["title"] == "text" and articles.fields["sku"] == "id"
    assert s.loop("default").features.fields == {}


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        load_settings(epsilon=2.0)
    with pytest.raises(ValueError):
        load_settings(exp_unit_seconds=0)


def test_a_misspelt_setting_is_an_error_naming_the_closest_one(tmp_path: Path) -> None:
    """Ignored, a typo would leave the default silently in force."""
    toml = tmp_path / "recloop.toml"
    toml.write_text('epsilom = 0.1\n[stream]\nlast_n = 3\n[loops.news]\nexplorr = "greedy"\n')
    with pytest.raises(InvalidInputError, match=r"'epsilom'; did you mean 'epsilon'\?"):
        load_settings(toml)
    toml.write_text("[stream]\nlats_n = 3\n")
    with pytest.raises(InvalidInputError, match=r"'stream.lats_n'; did you mean 'last_n'\?"):
        load_settings(toml)
    toml.write_text('[loops.news]\nexplorr = "greedy"\n')
    with pytest.raises(InvalidInputError, match=r"'loops.news.explorr'; did you mean 'explorer'"):
        load_settings(toml)  # checked at load, not at the loop's first request
    with pytest.raises(InvalidInputError, match=r"'features.text_dimm'"):
        load_settings(features={"text_dimm": 4})
    with pytest.raises(InvalidInputError, match=r"'exp_unit_secs'; did you mean"):
        Loop.open(tmp_path / "data", start=False, exp_unit_secs=1.0)
    with Loop.open(tmp_path / "data", start=False) as loop, pytest.raises(InvalidInputError):
        loop.reconfigure(epsilom=0.1)
    assert load_settings(epsilon=0.1, stream={"last_n": 3}).stream.last_n == 3


@pytest.mark.parametrize(
    "setting",
    [
        {"exp_unit_seconds": 99999999999999999999 * 3600.0},  # windows that never close
        {"exp_unit_seconds": float("inf")},
        {"checkpoint_every_seconds": 1e12},
        {"checkpoint_every_examples": 10**12},
        {"tick_seconds": 0.0},
        {"join_grace_seconds": 1e9},
        {"keep_model_versions": 10**9},
        {"log_retention_days": -5},
        {"log_retention_days": 1e9},
        {"seed": 2**64},
        {"softmax_lambda": float("inf")},
    ],
)
def test_every_duration_and_count_has_a_range(tmp_path: Path, setting: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        Loop.open(tmp_path, start=False, **setting)


def test_server_and_stream_settings_have_ranges() -> None:
    for bad in (
        {"max_body_bytes": 10**12},
        {"workers": 10**6},
        {"port": 70000},
        {"stream": {"k": 10**9}},
        {"stream": {"ttl_seconds": 1e300}},
        {"stream": {"session_gap_seconds": float("inf")}},
    ):
        with pytest.raises(InvalidInputError):
            load_settings(**bad)
