"""Offline experiments, as in the Decision Service: replay a log to compare learner configs.

Each configuration (VW flags, interactions, learning rate, explorer) is trained from scratch
on the log in its order with *progressive validation*: before learning from a row, the
learner scores that row's actions and its explorer says how likely it was to choose the
logged action; the importance weight ``pi / p_logged`` turns the logged reward into IPS and
SNIPS terms. So each estimate is what the configuration would have earned had it been
deployed from the start of the log, learning as it went -- with no second deployment. The
estimates come from :class:`~recloop.evaluation.terms.TermSums`, like every other estimator.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from recloop.core.errors import InvalidInputError
from recloop.core.types import Action, JoinedExample, available_actions
from recloop.evaluation.offpolicy import IPS, SNIPS
from recloop.evaluation.terms import Interval, TermSums
from recloop.exploration.explorers import EpsilonGreedy, Greedy, Softmax, make_explorer
from recloop.policies.vw import VWLearner
from recloop.policies.vw_args import check_learner_args

EXPLORERS = ("epsilon-greedy", "greedy", "softmax")

#: VW's own exploration: recloop explores outside VW, so these cannot be replayed.
_VW_EXPLORATION = ("--first", "--bag", "--cover", "--squarecb", "--regcb", "--regcbopt", "--rnd")


@dataclass(frozen=True, slots=True)
class LearnerConfig:
    """One candidate configuration: a VW ``--cb_adf`` learner plus recloop's explorer.

    ``--cb_explore_adf`` arguments are accepted as the Decision Service writes them: the
    reduction becomes ``--cb_adf`` (the learner ``--cb_explore_adf`` wraps) and
    ``--epsilon E`` / ``--softmax --lambda L`` become the explorer, overriding its fields,
    because recloop explores outside VW. Without a reduction, ``--cb_adf`` is implied. What
    remains must be learning options VW accepts (:func:`check_learner_args`): configs come
    from the command line and from requests (Personalizer's policy and evaluations).
    """

    name: str
    vw_args: str = "--cb_adf --cb_type mtr -q CA"
    explorer: str = "epsilon-greedy"
    epsilon: float = 0.05
    softmax_lambda: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInputError("a learner config needs a name")
        try:
            tokens = shlex.split(self.vw_args)
        except ValueError as exc:
            raise InvalidInputError(f"{self.name}: cannot split VW args: {exc}") from exc
        explorer, epsilon, lam = self.explorer, self.epsilon, self.softmax_lambda
        out: list[str] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok in _VW_EXPLORATION:
                raise InvalidInputError(
                    f"{self.name}: VW exploration {tok} cannot be replayed; use the explorer "
                    "(epsilon-greedy, greedy or softmax)"
                )
            if tok == "--cb_explore_adf":
                tok = "--cb_adf"
            elif tok in ("--epsilon", "--lambda") and i + 1 < len(tokens):
                value = _float(tokens[i + 1], f"{self.name}: {tok}")
                if tok == "--epsilon":
                    epsilon = value
                else:
                    lam = value
                i += 2
                continue
            elif tok == "--softmax":
                explorer = "softmax"
                i += 1
                continue
            out.append(tok)
            i += 1
        if "--cb_adf" not in out:
            out.insert(0, "--cb_adf")
        if explorer not in EXPLORERS:
            raise InvalidInputError(f"{self.name}: explorer must be one of {', '.join(EXPLORERS)}")
        if not 0.0 <= epsilon <= 1.0:
            raise InvalidInputError(f"{self.name}: epsilon must be in [0, 1], got {epsilon}")
        try:
            vw_args = check_learner_args(shlex.join(out))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{self.name}: {exc}") from None
        object.__setattr__(self, "vw_args", vw_args)
        object.__setattr__(self, "explorer", explorer)
        object.__setattr__(self, "epsilon", epsilon)
        object.__setattr__(self, "softmax_lambda", lam)

    @classmethod
    def parse(cls, spec: str) -> LearnerConfig:
        """``NAME=VW_ARGS[;epsilon=E][;explorer=greedy|softmax|epsilon-greedy][;lambda=L]``."""
        name, sep, rest = spec.partition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"config {spec!r}: expected NAME=VW_ARGS[;epsilon=E]")
        args, *options = rest.split(";")
        fields: dict[str, Any] = {}
        for option in options:
            key, eq, value = (s.strip() for s in option.partition("="))
            if not eq:
                raise InvalidInputError(f"config {spec!r}: option {option!r} is not KEY=VALUE")
            if key == "epsilon":
                fields["epsilon"] = _float(value, f"config {spec!r}: epsilon")
                fields.setdefault("explorer", "epsilon-greedy")
            elif key in ("lambda", "softmax_lambda"):
                fields["softmax_lambda"] = _float(value, f"config {spec!r}: lambda")
            elif key == "explorer":
                fields["explorer"] = value
            else:
                raise InvalidInputError(
                    f"config {spec!r}: unknown option {key!r} (epsilon, explorer, lambda)"
                )
        return cls(name.strip(), args.strip(), **fields)

    def make_explorer(self) -> Greedy | EpsilonGreedy | Softmax:
        return make_explorer(self.explorer, self.epsilon, self.softmax_lambda)

    def describe_explorer(self) -> str:
        if self.explorer == "epsilon-greedy":
            return f"epsilon-greedy({self.epsilon:g})"
        if self.explorer == "softmax":
            return f"softmax({self.softmax_lambda:g})"
        return self.explorer

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vw_args": self.vw_args,
            "explorer": self.explorer,
            "epsilon": self.epsilon,
            "softmax_lambda": self.softmax_lambda,
        }


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"{what} must be a number, got {text!r}") from None


def default_configs() -> list[LearnerConfig]:
    """The grid compared when none is given: cost estimator x interactions x epsilon.

    ``-q CA`` crosses context with action features (per-context preferences); without it
    the model can only rank actions the same way for everyone.
    """
    configs = []
    for cb_type in ("mtr", "ips"):
        for interactions in ("-q CA", ""):
            for epsilon in (0.05, 0.2):
                tag = "-qCA" if interactions else ""
                args = f"--cb_adf --cb_type {cb_type} {interactions}".strip()
                configs.append(LearnerConfig(f"{cb_type}{tag}-e{epsilon:g}", args, epsilon=epsilon))
    return configs


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """How one configuration would have done on the log (progressive validation)."""

    config: LearnerConfig
    ips: Interval
    snips: Interval
    n: int
    effective_sample_size: float
    max_weight: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "ips": self.ips.to_dict(),
            "snips": self.snips.to_dict(),
            "n": self.n,
            "effective_sample_size": self.effective_sample_size,
            "max_weight": self.max_weight,
        }


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """Results sorted by SNIPS (best first), with the logged policy as the baseline."""

    results: tuple[ConfigResult, ...]
    logged: Interval
    """The logged policy's observed average reward (on-policy, no weights)."""
    n: int
    alpha: float
    overlaps_runner_up: bool | None
    """Whether the best config's SNIPS interval overlaps the runner-up's: if so, the log does
    not separate them and the ranking may be noise."""
    warnings: tuple[str, ...] = ()

    @property
    def best(self) -> ConfigResult | None:
        return self.results[0] if self.results and self.n else None

    def result(self, name: str) -> ConfigResult:
        for r in self.results:
            if r.config.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "n": self.n,
            "alpha": self.alpha,
            "logged": self.logged.to_dict(),
            "best": best.config.name if best else None,
            "runner_up": self.results[1].config.name if len(self.results) > 1 else None,
            "overlaps_runner_up": self.overlaps_runner_up,
            "results": [r.to_dict() for r in self.results],
            "warnings": list(self.warnings),
        }


class _Replay:
    """One configuration's learner, explorer and running sums."""

    def __init__(self, config: LearnerConfig) -> None:
        self.config = config
        self.explorer = config.make_explorer()
        self.learner = VWLearner(config.vw_args, name=config.name)
        self.ips = TermSums()
        self.snips = TermSums()

    def step(self, example: JoinedExample, acts: list[Action], chosen: int) -> None:
        d = example.decision
        probs = self.explorer.distribution(self.learner.scores(d.context, acts))
        w = float(probs[chosen]) / d.probability
        self.ips.add(*IPS.row(w, example.reward), w=w)
        self.snips.add(*SNIPS.row(w, example.reward), w=w)
        self.learner.learn_one(example)  # only after scoring: progressive validation

    def result(self, alpha: float) -> ConfigResult:
        return ConfigResult(
            self.config,
            self.ips.normal_interval(alpha),
            self.snips.normal_interval(alpha),
            self.snips.n,
            self.snips.effective_sample_size(),
            self.snips.max_w,
        )


def replay_experiment(
    examples: Iterable[JoinedExample],
    configs: Sequence[LearnerConfig],
    alpha: float = 0.05,
    progress: Callable[[int], None] | None = None,
) -> ExperimentReport:
    """Replay the log once (streaming, in its order) through every configuration.

    ``progress`` is called with the number of examples done so far (every 64 and at the end).
    """
    if not configs:
        raise InvalidInputError("no learner configurations to compare")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"config names must be unique: {names}")
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
    runs: list[_Replay] = []
    logged = TermSums()
    try:
        for config in configs:
            runs.append(_Replay(config))
        for example in examples:
            d = example.decision
            if not 0.0 < d.probability <= 1.0:
                raise InvalidInputError(
                    f"event {d.event_id}: logged probability {d.probability} is not in (0, 1]"
                )
            acts = available_actions(d.actions, d.excluded)
            chosen = next((i for i, a in enumerate(acts) if a.id == d.chosen), None)
            if chosen is None:
                raise InvalidInputError(f"event {d.event_id}: chosen action {d.chosen!r} unknown")
            logged.add(example.reward)
            for run in runs:
                run.step(example, acts, chosen)
            if progress is not None and logged.n % 64 == 0:
                progress(logged.n)
    finally:
        for run in runs:
            run.learner.close()
    if progress is not None:
        progress(logged.n)
    return _report([run.result(alpha) for run in runs], logged, alpha)


def _report(results: list[ConfigResult], logged: TermSums, alpha: float) -> ExperimentReport:
    def key(r: ConfigResult) -> float:
        return -r.snips.value if math.isfinite(r.snips.value) else math.inf

    ordered = sorted(results, key=key)  # stable: ties keep the order given
    overlap: bool | None = None
    warnings: list[str] = []
    n = logged.n
    if n == 0:
        warnings.append("the log is empty: nothing to compare")
    elif len(ordered) > 1:
        best, second = ordered[0].snips, ordered[1].snips
        overlap = best.low <= second.high
        if overlap:
            warnings.append(
                f"{ordered[0].config.name} and {ordered[1].config.name} are not separated at "
                f"{1 - alpha:.0%}: their SNIPS intervals overlap"
            )
    for r in ordered:
        if n and r.effective_sample_size < 0.01 * n:
            warnings.append(
                f"{r.config.name}: effective sample size {r.effective_sample_size:.0f} of {n}; "
                "the log rarely took its actions, so its estimate is unreliable"
            )
    return ExperimentReport(
        results=tuple(ordered),
        logged=logged.normal_interval(alpha),
        n=n,
        alpha=alpha,
        overlaps_runner_up=overlap,
        warnings=tuple(warnings),
    )
