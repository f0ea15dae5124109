"""Every way VW arguments enter recloop refuses what is not a learning option, before it is
stored and before VW sees it: candidate policies, settings (TOML, environment, Loop.open,
reconfigure), offline experiment configs, and the options in a model file's header."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from recloop import Loop
from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.evaluation.experiments import LearnerConfig
from recloop.kinds.policies import make_policy
from recloop.policies.vw import VWLearner, VWPolicy
from recloop.settings import LoopSettings, load_settings
from tests.unit.vw_forge import forge_model

PERSONALIZER_DEFAULT = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"


def _writes(target: Path) -> str:
    """Arguments that made VW create three files in ``target`` as it parsed them."""
    return f"-f {target}/x.vw --readable_model {target}/x.txt --invert_hash {target}/y.txt"


def _files(target: Path) -> list[str]:
    gc.collect()  # a workspace that escaped would write its files when it is freed
    return sorted(p.name for p in target.iterdir())


def test_a_vw_cb_candidate_cannot_write_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="'-f' is not allowed"):
        make_policy("vw-cb", {"args": f"--cb_adf {_writes(tmp_path)}"})
    with pytest.raises(InvalidInputError, match="'--bogus' is not allowed"):
        make_policy("vw-cb", {"args": "--cb_adf --bogus"})
    with pytest.raises(InvalidInputError, match=r"needs params\.args"):
        make_policy("vw-cb", {"args": ["--cb_adf"]})
    assert _files(tmp_path) == []


def test_settings_refuse_file_options_from_toml_environment_and_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    toml = tmp_path / "r.toml"
    toml.write_text(f'[loops.feed]\nvw_args = "--cb_adf {_writes(out)}"\n')
    with pytest.raises(InvalidInputError, match=r"loops\.feed\.vw_args: .*'-f' is not allowed"):
        load_settings(toml)
    toml.write_text(f'vw_args = "--cb_adf --cb_type mtr --readable_model {out}/x.txt"\n')
    with pytest.raises(InvalidInputError, match="'--readable_model' is not allowed"):
        load_settings(toml)
    with pytest.raises(InvalidInputError, match="'--bogus' is not allowed"):
        load_settings(vw_args="--cb_adf --bogus")
    monkeypatch.setenv("RECLOOP_VW_ARGS", f"--cb_adf --invert_hash {out}/y.txt")
    with pytest.raises(InvalidInputError, match="'--invert_hash' is not allowed"):
        load_settings()
    monkeypatch.delenv("RECLOOP_VW_ARGS")
    with pytest.raises(ValidationError, match="'-f' is not allowed"):
        LoopSettings(vw_args=f"--cb_adf {_writes(out)}")
    with pytest.raises(ValidationError, match="explores outside VW"):
        LoopSettings(vw_args="--cb_explore_adf --epsilon 0.2")  # its models cannot be served
    assert _files(out) == []
    assert LoopSettings(vw_args=" --cb_adf  --cb_type ips ").vw_args == "--cb_adf --cb_type ips"


def test_loop_open_and_reconfigure_check_vw_args_before_storing_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidInputError, match="'-f' is not allowed"):
        Loop.open(tmp_path / "data", start=False, vw_args=f"--cb_adf {_writes(out)}")
    with Loop.open(tmp_path / "data", start=False) as lp:
        before = lp.settings.vw_args
        for bad in (
            f"--cb_adf {_writes(out)}",
            "--cb_adf --bogus",  # was stored, shown, and crashed the pipeline's next start
            "--cb_adf --cb_type mtr --cb_type ips",  # allowed options, but VW refuses them
        ):
            with pytest.raises(InvalidInputError):
                lp.reconfigure(vw_args=bad)
            assert lp.settings.vw_args == before
        assert lp.joined.get_state("settings.overrides") is None  # nothing was stored
        lp.reconfigure(vw_args="--cb_adf --cb_type ips")
        assert json.loads(lp.joined.get_state("settings.overrides") or "{}") == {
            "vw_args": "--cb_adf --cb_type ips"
        }
    assert _files(out) == []


def test_experiment_configs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"x: .*'-f' is not allowed"):
        LearnerConfig("x", f"--cb_adf {_writes(tmp_path)}")
    with pytest.raises(InvalidInputError, match="'--daemon' is not allowed"):
        LearnerConfig.parse("d=--cb_explore_adf --epsilon 0.1 --daemon")
    with pytest.raises(InvalidInputError, match="-b: '40' is not a whole number"):
        LearnerConfig.parse("b=--cb_adf -b 40;epsilon=0.1")
    assert _files(tmp_path) == []
    personalizer = LearnerConfig.parse(f"p={PERSONALIZER_DEFAULT}")
    assert personalizer.vw_args == "--cb_adf --power_t 0 -l 0.001 --cb_type mtr -q ::"
    assert personalizer.epsilon == 0.2 and personalizer.explorer == "epsilon-greedy"


def test_a_learner_checks_its_arguments_whoever_builds_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="'--readable_model' is not allowed"):
        VWLearner(f"--cb_adf --readable_model {tmp_path}/x.txt")
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("options", " --readable_model {d}/evil.txt", "'--readable_model' is not allowed"),
        ("options", " -f {d}/evil.vw", "'-f' is not allowed"),
        ("id", "x --readable_model {d}/evil.txt", "id .* is not a plain name"),
    ],
)
def test_a_model_file_cannot_tell_vw_to_write_files(
    field: str, value: str, message: str, tmp_path: Path
) -> None:
    learner = VWLearner("--cb_adf --cb_type mtr -q CA")
    blob = learner.snapshot()
    learner.close()
    text = value.format(d=tmp_path)
    if field == "options":
        forged = forge_model(blob, extra_options=text)
    else:
        forged = forge_model(blob, model_id=text)
    with pytest.raises(ModelRejectedError, match=message):
        VWPolicy.from_bytes(forged, "forged")
    with pytest.raises(ModelRejectedError, match=message):
        VWLearner.from_bytes(forged)
    assert _files(tmp_path) == []
    VWPolicy.from_bytes(forge_model(blob, extra_options=" --noconstant"), "ok").close()
