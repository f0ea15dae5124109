"""The model-kind registry (``recloop.kinds.models``): the one place a loop decides what a
stored blob is and which learner its settings name."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from typing import get_args

import pytest

from recloop.agents.formats import DRN_MAGIC
from recloop.kinds.models import MODEL_KINDS, kind_of, learner_kind
from recloop.policies.vw import VWLearner
from recloop.settings import LoopSettings


def test_every_learner_the_settings_accept_is_a_kind_that_learns() -> None:
    named = set(get_args(LoopSettings.model_fields["learner"].annotation))
    learned = {name for name, kind in MODEL_KINDS.items() if kind.learner is not None}
    assert named == learned
    for name in named:
        kind = learner_kind(LoopSettings(learner=name))
        assert kind is MODEL_KINDS[name].learner


def _agent_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("meta.json", "{}")
    return out.getvalue()


def _other_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("weights.bin", b"\0")
    return out.getvalue()


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        (_agent_zip(), "agent"),
        (DRN_MAGIC + b"2\n" + b"\0" * 16, "drn"),
        (VWLearner().snapshot(), "vw"),
        (_other_zip(), "vw"),  # a zip without meta.json is not an agent
        (b"", "vw"),
    ],
)
def test_each_blob_is_told_by_its_contents(blob: bytes, expected: str) -> None:
    assert kind_of(blob).name == expected


def test_the_vw_kind_learns_and_serves_without_loading_pytorch(tmp_path: object) -> None:
    """The registry names agent code only lazily: a VW loop never imports torch."""
    code = (
        "import sys\n"
        "from recloop.kinds.models import learner_kind, load_model_policy\n"
        "from recloop.settings import LoopSettings\n"
        "s = LoopSettings()\n"
        "kind = learner_kind(s)\n"
        "learner = kind.new(s)\n"
        "policy = load_model_policy(learner.snapshot(), '1')\n"
        "kind.resume(s, learner.snapshot())\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(type(policy).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "VWPolicy"
