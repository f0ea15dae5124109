"""The allow-list of VW arguments (recloop.policies.vw_args): learning options pass, anything
that makes VW touch files, ports or input is refused before VW sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.policies.vw import VWLearner
from recloop.policies.vw_args import (
    allowed_vw_args,
    check_learner_args,
    check_model_header,
    check_vw_args,
)
from tests.unit.vw_forge import forge_model

PERSONALIZER_DEFAULT = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
"""Azure Personalizer's default learning policy."""

FILE_OPTIONS = [
    "-f {d}/model.vw",
    "--final_regressor {d}/model.vw",
    "--readable_model {d}/model.txt",
    "--invert_hash {d}/inverted.txt",
    "--cache_file {d}/cache",
    "-c",
    "--cache",
    "--daemon",
    "--pid_file {d}/vw.pid",
    "--port 26542",
    "--port_file {d}/port",
    "-i {d}/model.vw",
    "--initial_regressor {d}/model.vw",
    "-d {d}/data.txt",
    "--data {d}/data.txt",
    "-p {d}/predictions.txt",
    "--predictions {d}/predictions.txt",
    "-r {d}/raw.txt",
    "--raw_predictions {d}/raw.txt",
    "--audit_regressor {d}/audit.txt",
    "--output_feature_regularizer_binary {d}/reg.bin",
    "--save_resume",
    "--dictionary {d}/dict.txt",
    "--feature_mask {d}/mask.vw",
    "{d}/data.txt",  # a bare word is VW's input file
]


@pytest.mark.parametrize("option", FILE_OPTIONS)
def test_file_cache_daemon_and_output_options_are_refused_before_vw_sees_them(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = option.format(d=tmp_path)
    name = text.split()[0]
    for check in (check_vw_args, check_learner_args):
        with pytest.raises(InvalidInputError, match="is not allowed") as refused:
            check(f"--cb_adf --cb_type mtr {text} -q CA")
        assert f"'{name[:30]}" in str(refused.value)  # the error names the option
    assert list(tmp_path.iterdir()) == []


def test_personalizers_default_policy_is_accepted() -> None:
    assert check_vw_args(PERSONALIZER_DEFAULT) == PERSONALIZER_DEFAULT
    # ... but not as a learner's arguments: recloop explores outside VW
    with pytest.raises(InvalidInputError, match="explores outside VW"):
        check_learner_args(PERSONALIZER_DEFAULT)


@pytest.mark.parametrize(
    "args",
    [
        "--cb_adf",
        "--cb_adf --cb_type mtr -q CA",
        "--cb_adf --cb_type dr --quadratic C: --interactions :: --cubic CAA",
        "--cb_adf --cb_type ips -l 0.5 --power_t 0 --initial_t 1 --l1 1e-6 --l2 1e-6",
        "--cb_adf --cb_type sm --adaptive --normalized --invariant --noconstant",
        "--cb_adf --cb_type dm --sgd --decay_learning_rate 0.9 --hash all --random_seed 7",
        "--cb_adf --ignore B --ignore_linear D --keep CA --loss_function logistic -b 24",
        "--cb_adf --bit_precision 1 --quiet",
    ],
)
def test_learning_options_pass(args: str) -> None:
    assert check_learner_args(args) == args


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--cb_adf -b 40", r"-b: '40' is not a whole number in \[1, 24\]"),
        ("--cb_adf --bit_precision 25", "not a whole number"),
        ("--cb_adf -b 0", "not a whole number"),
        ("--cb_adf -b 1.5", "not a whole number"),
        ("--cb_adf -l nan", "not a number"),
        ("--cb_adf -l inf", "not a number"),
        ("--cb_adf -l 1e999", "not a number"),
        ("--cb_adf -l -1", "not a number"),
        ("--cb_adf -l 1_0", "not a number"),
        ("--cb_adf -b \u0663", "not a whole number"),  # an Arabic-Indic 3: Python's digit
        ("--cb_adf --random_seed 18446744073709551616", "not a whole number"),  # 2^64
        ("--cb_adf\x0b-f x.vw", "is not allowed"),  # VW may split where shlex does not
        ("--cb_adf -q C\x00", "namespace letters"),
        ("--cb_adf --power_t 2", "not a number"),
        ("--cb_adf --cb_type bogus", "not one of ips, dr, mtr, dm, sm"),
        ("--cb_adf --hash none", "not one of"),
        ("--cb_adf -q CAB", "not 2 namespace letters"),
        ("--cb_adf -q -f", "not 2 namespace letters"),
        ("--cb_adf -q", "needs a value"),
        ("--cb_adf --cubic CA", "not 3 namespace letters"),
        ("--cb_adf --ignore :", "namespace letters"),
        ("--cb_adf '-q CA'", "is not allowed"),  # VW knows no quoting: one token, refused
        ("--cb_adf -q 'C A'", "namespace letters"),
        ("--cb_adf '-q", "cannot split"),
        ("--cb_adf --bogus", "'--bogus' is not allowed"),
        ("--cb_adf -b18", "'-b18' is not allowed"),
        ("--cb_adf --final_regressor=x.vw", "'--final_regressor' is not allowed"),
        ("--cb_adf " + "-q CA " * 40, "more than 64"),
        ("--cb_adf " + " " * 1000, "longer than 1000"),
    ],
)
def test_values_are_typed_and_bounded(args: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_learner_args(args)


def test_arguments_come_back_normalised() -> None:
    assert allowed_vw_args("  --cb_adf\t--cb_type=ips\n-q  CA ") == "--cb_adf --cb_type ips -q CA"
    assert check_vw_args("--cb_explore_adf --epsilon=0.1") == "--cb_explore_adf --epsilon 0.1"


def test_allowed_options_vw_refuses_are_refused_too() -> None:
    with pytest.raises(InvalidInputError, match="Vowpal Wabbit rejected"):
        check_learner_args("--cb_adf --cb_type mtr --cb_type ips")
    with pytest.raises(InvalidInputError, match="Vowpal Wabbit rejected"):
        check_vw_args("--cb_adf -q :: --cb_type dr --cb_type sm")


def test_a_learner_needs_the_cb_adf_reduction() -> None:
    with pytest.raises(InvalidInputError, match="need --cb_adf"):
        check_learner_args("--cb_type mtr -q CA")
    with pytest.raises(InvalidInputError, match="explores outside VW"):
        check_learner_args("--cb_adf --epsilon 0.1")


def test_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="must be a string"):
        check_vw_args(["--cb_adf"])  # type: ignore[arg-type]


def test_model_headers_hold_learning_options_only() -> None:
    learner = VWLearner("--cb_adf --cb_type ips -q :: --noconstant --random_seed 3 -l 0.3")
    blob = learner.snapshot()
    learner.close()
    check_model_header(blob)  # what VW saves for an allowed learner loads again
    check_model_header(forge_model(blob, model_id="mine-1.0"))
    for forged, message in [
        (forge_model(blob, bits=30), "30 bits; at most 24"),
        (forge_model(blob, bits=0), "0 bits"),
        (forge_model(blob, extra_options=" --daemon"), "'--daemon' is not allowed"),
        (forge_model(blob, extra_options=" --cb_type"), "needs a value"),
        (forge_model(blob, extra_options=" --noconstant\x1c-f"), "control characters"),
        (forge_model(blob, model_id="a b"), "is not a plain name"),
        (b"\x06\x00\x00\x007.9.0\x00m", "before 8.3.2 are not supported"),
        (b"\x03\x00\x00\x00abc", "no version number"),
        (b"\xff\xff\xff\xff", "runs past the end"),
        (blob[:30], "ends early"),
        (b"", "ends early"),
    ]:
        with pytest.raises(ModelRejectedError, match=message):
            check_model_header(forged)
