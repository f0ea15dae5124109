"""What a person looks at to see a loop learn: the figures behind ``/dashboard`` and
``recloop report`` (one function for both, so the page and the PNGs show the same).

* reward over time: the last ``recent`` joined decisions in equal windows, each with the
  observed reward of what was deployed and the off-policy (SNIPS) estimate of the loop's
  default policy on the same decisions, with its 95% interval;
* the off-policy estimates of every candidate policy, and the deployed policy's observed
  average (from the loop's online evaluators);
* the model versions (which one serves, which is pinned);
* join health: default-reward rate, dead letters, learner lag.

Bounded work per call: the windows read at most ``recent`` joined rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recloop.core.types import JoinedExample, available_actions
from recloop.evaluation.offpolicy import SNIPS
from recloop.evaluation.terms import TermSums

if TYPE_CHECKING:
    from recloop.client import Loop


def _clean(x: float) -> float | None:
    return x if math.isfinite(x) else None


def reward_windows(loop: Loop, recent: int = 5000, windows: int = 30) -> list[dict[str, Any]]:
    """Consecutive windows of the last ``recent`` joined decisions, oldest first."""
    end = loop.joined.end_seq()
    rows: list[JoinedExample] = []
    after = max(0, end - recent)
    while True:
        batch = loop.joined.read(after, 2000)
        rows.extend(batch)
        if len(batch) < 2000:
            break
        after = batch[-1].seq
    rows = rows[-recent:]
    if not rows:
        return []
    size = max(1, math.ceil(len(rows) / windows))
    default = loop.default_policy
    out = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        observed, estimate = TermSums(), TermSums()
        for ex in chunk:
            d = ex.decision
            acts = available_actions(d.actions, d.excluded)
            scores = np.asarray(default.scores(d.context, acts), dtype=float)
            pick = acts[int(np.argmax(scores))].id  # the default policy, greedy
            w = (1.0 if pick == d.chosen else 0.0) / d.probability
            observed.add(ex.reward)
            estimate.add(*SNIPS.row(w, ex.reward), w=w)
        iv = estimate.normal_interval()
        out.append(
            {
                "time": chunk[-1].decision.timestamp,
                "n": len(chunk),
                "observed": _clean(observed.value()),
                "default": _clean(iv.value),
                "default_low": _clean(iv.low),
                "default_high": _clean(iv.high),
            }
        )
    return out


def loop_report(loop: Loop, recent: int = 5000) -> dict[str, Any]:
    stats = loop.stats
    evaluations = loop.evaluations()
    return {
        "loop": loop.name,
        "model_version": loop.model_version,
        "rewards": reward_windows(loop, recent),
        "evaluations": {
            "deployed": evaluations.get("deployed", {}),
            "examples": evaluations.get("examples", 0),
            "candidates": [
                {"name": c["name"], "n": c["n"], "snips": c["snips"], "ips": c["ips"]}
                for c in evaluations.get("candidates", [])
            ],
        },
        "models": {
            "serving": loop.model_version,
            "pinned": loop.models.pinned(),
            "versions": [
                {"version": v.version, "created": v.created, "kind": v.meta.get("kind", "")}
                for v in loop.model_versions()[:20]
            ],
        },
        "join": {
            # what the stores hold (a restarted server's counters start at 0, and a
            # dashboard said "0 decisions" over a full log), then this process's counters
            "decisions_stored": loop.log.count("decision"),
            "joined_stored": loop.joined.count(),
            "decisions": stats.get("decisions_total"),
            "joins": stats.get("joins_total"),
            "default_reward_rate": stats.get("default_reward_rate"),
            "dead_letters": sum(
                v for k, v in stats.counters().items() if k.startswith("dead_letters_total")
            ),
            "learner_lag_examples": stats.get("learner_lag_examples"),
        },
        "apprentice": loop.apprentice_report() if loop.settings.learning_mode != "online" else None,
    }


def write_pngs(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """The dashboard's charts as PNG files (for people without a browser)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rewards = report["rewards"]
    fig, ax = plt.subplots(figsize=(8, 4))
    if rewards:
        x = np.arange(len(rewards))
        observed = [np.nan if r["observed"] is None else r["observed"] for r in rewards]
        default = [np.nan if r["default"] is None else r["default"] for r in rewards]
        low = [np.nan if r["default_low"] is None else r["default_low"] for r in rewards]
        high = [np.nan if r["default_high"] is None else r["default_high"] for r in rewards]
        ax.plot(x, observed, label="deployed (observed)", color="tab:blue")
        ax.plot(x, default, label="default policy (SNIPS)", color="tab:gray")
        ax.fill_between(x, low, high, color="tab:gray", alpha=0.2)
        ax.legend()
    ax.set_xlabel(
        f"window of joined decisions (newest right; {sum(r['n'] for r in rewards)} in all)"
    )
    ax.set_ylabel("reward per decision")
    ax.set_title(f"loop {report['loop']}: reward over time")
    written.append(_save(fig, out_dir / f"{report['loop']}-reward.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    rows = [("deployed (observed)", report["evaluations"]["deployed"].get("observed", {}))]
    rows += [(c["name"], c["snips"]) for c in report["evaluations"]["candidates"]]
    rows = [(n, e) for n, e in rows if e and e.get("value") is not None]
    for i, (_, e) in enumerate(rows):
        low = e["low"] if e.get("low") is not None else e["value"]
        high = e["high"] if e.get("high") is not None else e["value"]
        ax.errorbar(
            [e["value"]], [i], xerr=[[e["value"] - low], [high - e["value"]]], fmt="o", capsize=4
        )
    ax.set_yticks(range(len(rows)), [n for n, _ in rows])
    ax.set_xlabel("estimated reward per decision (95% interval)")
    ax.set_title(f"loop {report['loop']}: off-policy estimates")
    written.append(_save(fig, out_dir / f"{report['loop']}-estimates.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    from matplotlib import pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
