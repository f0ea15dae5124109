"""The Open Bandit Dataset (OBD) sample, read from the files that ``obp`` ships, without ``obp``.

``obp`` 0.5.7 pins old dependencies (and imports torch), so recloop never imports it: we locate
the installed package with :func:`importlib.util.find_spec` (which does not execute it) and read
its CSV files and its BernoulliTS prior ourselves, with the standard library and numpy only.
The arrays reproduce ``OpenBanditDataset(...).obtain_batch_bandit_feedback()`` (same rows, same
order, same one-hot context), so off-policy estimates here compare with published OBP numbers.
Floats are parsed correctly rounded, as pandas 3 does; pandas 2's parser (the one obp runs on)
keeps 17 digits counting leading zeros, so some of its pscores differ by up to 1.1e-16.

Layout inside the package: ``obp/dataset/obd/{random,bts}/{all,men,women}/{campaign}.csv``
(10,000 logged impressions each) plus ``item_context.csv``; the production prior of the
BernoulliTS policy is ``obp/policy/conf/prior_bts.yaml``.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from recloop.evaluation.logdata import BanditData

INSTALL_HINT: Final = "pip install --no-deps --ignore-requires-python obp==0.5.7"
BEHAVIOR_POLICIES: Final = ("random", "bts")
CAMPAIGNS: Final = ("all", "men", "women")
LEN_LIST: Final = 3

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_S = TypeVar("_S", bound=np.generic)


@dataclass(frozen=True, eq=False)
class ObdLog:
    """One behaviour policy's log for one campaign, as obp's batch bandit feedback.

    ``position`` is 0-based (the CSV's 1..3, densely re-ranked as obp does); ``context`` is the
    one-hot encoding of the four user features with the first level of each dropped
    (``pd.get_dummies(drop_first=True)``); ``action_context`` is obp's item features (label
    encoded categorical features, then the numeric ``item_feature_0``). Arrays are read-only.
    """

    behavior_policy: str
    campaign: str
    action: IntArray
    position: IntArray
    reward: FloatArray
    pscore: FloatArray
    context: FloatArray
    action_context: FloatArray
    n_actions: int
    len_list: int

    @property
    def n_rounds(self) -> int:
        return int(self.action.shape[0])

    def bandit_data(self) -> BanditData:
        """The log as recloop's estimators take it (position as part of the context)."""
        from recloop.evaluation.logdata import BanditData

        return BanditData(
            action=np.asarray(self.action),
            reward=np.asarray(self.reward),
            pscore=np.asarray(self.pscore),
            n_actions=self.n_actions,
            position=np.asarray(self.position),
            context=np.asarray(self.context),
            action_features=np.asarray(self.action_context),
        )


def _obp_package_dir() -> Path | None:
    """Directory of the installed ``obp`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("obp")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def _data_root(data_path: Path | str | None) -> Path:
    if data_path is not None:
        return Path(data_path)
    pkg = _obp_package_dir()
    root = pkg / "dataset" / "obd" if pkg is not None else None
    if root is None or not root.is_dir():
        raise FileNotFoundError(
            "the Open Bandit Dataset sample ships inside the obp package, which is not installed;"
            f" install it with: {INSTALL_HINT}"
        )
    return root


def _prior_file() -> Path:
    pkg = _obp_package_dir()
    path = pkg / "policy" / "conf" / "prior_bts.yaml" if pkg is not None else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "the BernoulliTS production prior (obp/policy/conf/prior_bts.yaml) is missing;"
            f" install obp with: {INSTALL_HINT}"
        )
    return path


def obd_available() -> bool:
    """Whether obp's OBD sample and BTS prior are installed (tests skip on False)."""
    try:
        root = _data_root(None)
        _prior_file()
    except FileNotFoundError:
        return False
    return all(
        (root / bp / c / f"{c}.csv").is_file() for bp in BEHAVIOR_POLICIES for c in CAMPAIGNS
    )


def _check(behavior_policy: str, campaign: str) -> None:
    if behavior_policy not in BEHAVIOR_POLICIES:
        raise ValueError(f"behavior_policy must be one of {BEHAVIOR_POLICIES}: {behavior_policy!r}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign must be one of {CAMPAIGNS}: {campaign!r}")


def _read_columns(path: Path) -> dict[str, list[str]]:
    """CSV as column name -> raw strings (the unnamed index column is dropped, as obp does)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; install obp with: {INSTALL_HINT}")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    columns = [list(col) for col in zip(*body, strict=True)] if body else [[] for _ in header]
    return {name: col for name, col in zip(header, columns, strict=True) if name != ""}


def _ints(col: list[str]) -> IntArray:
    return np.fromiter(map(int, col), dtype=np.int64, count=len(col))


def _floats(col: list[str]) -> FloatArray:
    return np.fromiter(map(float, col), dtype=np.float64, count=len(col))


def _codes(col: list[str]) -> tuple[int, IntArray]:
    """Sorted-level codes, as pandas' ``factorize(sort=True)`` / sklearn's LabelEncoder."""
    levels, inverse = np.unique(np.asarray(col, dtype=object), return_inverse=True)
    return len(levels), inverse.astype(np.int64).reshape(-1)


def _one_hot_drop_first(col: list[str]) -> FloatArray:
    n_levels, codes = _codes(col)
    return np.eye(n_levels, dtype=np.float64)[codes][:, 1:]


def _readonly(a: npt.NDArray[_S]) -> npt.NDArray[_S]:
    a.setflags(write=False)
    return a


def load_obd(
    behavior_policy: str = "random",
    campaign: str = "all",
    data_path: Path | str | None = None,
) -> ObdLog:
    """Load one OBD log exactly as ``obp.dataset.OpenBanditDataset`` would.

    ``data_path`` may point at a full OBD download laid out like the sample
    (``{behavior_policy}/{campaign}/{campaign}.csv``); by default obp's bundled sample is used.
    Rows are ordered by timestamp with numpy's (unstable) quicksort on the timestamp strings,
    because that is what ``DataFrame.sort_values`` does in obp: a stable sort would swap two
    tied rows of the random/men log relative to obp.
    """
    _check(behavior_policy, campaign)
    folder = _data_root(data_path) / behavior_policy / campaign
    data = _read_columns(folder / f"{campaign}.csv")
    items = _read_columns(folder / "item_context.csv")

    order = np.argsort(np.asarray(data["timestamp"], dtype=object), kind="quicksort")
    action = _ints(data["item_id"])[order]
    _, position = _codes(data["position"])
    reward = _floats(data["click"])[order]
    pscore = _floats(data["propensity_score"])[order]
    user_cols = [name for name in data if "user_feature" in name]
    context = np.hstack([_one_hot_drop_first(data[name]) for name in user_cols])[order]

    item_cat = [name for name in items if name not in ("item_id", "item_feature_0")]
    action_context = np.column_stack(
        [_codes(items[name])[1].astype(np.float64) for name in item_cat]
        + [_floats(items["item_feature_0"])]
    )
    n_actions = max(int(action.max()) + 1, len(items["item_id"])) if action.size else 0
    return ObdLog(
        behavior_policy=behavior_policy,
        campaign=campaign,
        action=_readonly(action),
        position=_readonly(position[order]),
        reward=_readonly(reward),
        pscore=_readonly(pscore),
        context=_readonly(np.ascontiguousarray(context)),
        action_context=_readonly(action_context),
        n_actions=n_actions,
        len_list=LEN_LIST,
    )


def on_policy_value(behavior_policy: str, campaign: str) -> float:
    """Mean click rate in a policy's own log: OBP's ground truth for off-policy estimates."""
    return float(load_obd(behavior_policy, campaign).reward.mean())


def _parse_prior(text: str) -> dict[str, dict[str, list[float]]]:
    """Parse ``prior_bts.yaml`` (``campaign: {alpha: [..], beta: [..]}`` in block style).

    A tiny reader for this one file, so that pyyaml is not a recloop dependency.
    """
    prior: dict[str, dict[str, list[float]]] = {}
    campaign: str | None = None
    key: str | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        if body.startswith("- "):
            if campaign is None or key is None:
                raise ValueError(f"list item outside a campaign/key in prior file: {raw!r}")
            prior[campaign][key].append(float(body[2:]))
        elif body.endswith(":") and indent == 0:
            campaign, key = body[:-1].strip(), None
            prior[campaign] = {}
        elif body.endswith(":") and campaign is not None:
            key = body[:-1].strip()
            prior[campaign][key] = []
        else:
            raise ValueError(f"unexpected line in prior file: {raw!r}")
    return prior


def bts_prior(campaign: str) -> tuple[FloatArray, FloatArray]:
    """ZOZOTOWN's production Beta(alpha, beta) prior per item for ``campaign``."""
    _check("bts", campaign)
    entry = _parse_prior(_prior_file().read_text())[campaign]
    alpha = np.asarray(entry["alpha"], dtype=np.float64)
    beta = np.asarray(entry["beta"], dtype=np.float64)
    if alpha.shape != beta.shape or alpha.ndim != 1:
        raise ValueError(f"malformed prior for {campaign!r}: {alpha.shape} vs {beta.shape}")
    return alpha, beta


def bts_action_dist(
    campaign: str,
    n_rounds: int,
    n_sim: int = 100_000,
    seed: int = 12345,
    chunk: int = 10_000,
) -> FloatArray:
    """Position-wise ranking distribution of Bernoulli TS under the production prior.

    Equivalent to obp's ``BernoulliTS(n_actions, len_list=3, is_zozotown_prior=True,
    campaign=...).compute_batch_action_dist(n_rounds, n_sim)`` up to Monte-Carlo error (obp
    loops in Python over ``RandomState``; this draws chunks of Beta samples with a
    ``Generator``). Shape ``(n_rounds, n_items, 3)`` where ``n_items`` is the campaign's catalogue
    (80 all, 34 men, 46 women). The policy never updates, so every round is the same: the result
    is a read-only broadcast view, not ``n_rounds`` copies.
    """
    if n_sim < 1 or n_rounds < 0 or chunk < 1:
        raise ValueError("need n_sim >= 1, n_rounds >= 0 and chunk >= 1")
    alpha, beta = bts_prior(campaign)
    n_items = alpha.size
    if n_items < LEN_LIST:
        raise ValueError(f"prior for {campaign!r} has fewer than {LEN_LIST} items")
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_items, LEN_LIST), dtype=np.int64)
    for start in range(0, n_sim, chunk):
        m = min(chunk, n_sim - start)
        neg_theta = -rng.beta(alpha, beta, size=(m, n_items))
        top = np.argpartition(neg_theta, LEN_LIST - 1, axis=1)[:, :LEN_LIST]
        ranked = np.take_along_axis(
            top, np.argsort(np.take_along_axis(neg_theta, top, axis=1), axis=1), axis=1
        )
        for pos in range(LEN_LIST):
            counts[:, pos] += np.bincount(ranked[:, pos], minlength=n_items)
    dist = counts.astype(np.float64) / n_sim
    return np.broadcast_to(dist, (n_rounds, n_items, LEN_LIST))
