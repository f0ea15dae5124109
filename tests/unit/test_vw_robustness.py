"""The default VW learner against a few heavy importance weights (issue 20, defect 12):
over the same seeds, VW's own defaults let a model version go wrong for a whole context;
recloop's default must not, and must learn the planted preference as fast."""

from __future__ import annotations

from benchmarks.vw_robustness import GAPS, MILESTONES, run

from recloop.settings import DEFAULT_LEARNER_ARGS

VW_DEFAULTS = "--cb_adf --cb_type mtr -q CA"
SEEDS = range(10)


def test_the_default_learner_has_no_wrong_version_where_vw_defaults_do() -> None:
    ours = [run(DEFAULT_LEARNER_ARGS + " -q CA", s, GAPS["easy"]) for s in SEEDS]
    theirs = [run(VW_DEFAULTS, s, GAPS["easy"]) for s in SEEDS]
    assert sum(r["worst_version"] < 1.0 for r in theirs) >= 5  # the failure is real here
    assert all(r["worst_version"] == 1.0 for r in ours)
    first = MILESTONES[0]
    assert sum(r["at"][first] for r in ours) >= sum(r["at"][first] for r in theirs)
