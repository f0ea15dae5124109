"""Cross-fitted reward models q(x, a) for DM and the doubly robust estimators.

Cross-fitting (k folds): the q used for a row comes from a model that never saw that row,
so DR's correction term is not fooled by the model's overfitting. Any scikit-learn
regressor works; the default, gradient-boosted trees, learns context x action interactions
from one-hot actions (or action features) without feature engineering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recloop.evaluation.logdata import BanditData, JoinedLog
from recloop.log.dsjson import flatten_features

Array = NDArray[np.float64]
RegressorFactory = Callable[[int], Any]
"""seed -> an unfitted scikit-learn regressor (anything with fit/predict)."""


def _hist_gbm(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, random_state=seed)


def _ridge(seed: int) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


def _random_forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=50, min_samples_leaf=5, random_state=seed, n_jobs=1)


class ProbabilityModel:
    """A classifier used as a reward model for 0/1 rewards: ``predict`` is P(reward = 1),
    so q stays in [0, 1] (a regressor's squared loss can leave it)."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self._constant: float | None = None

    def fit(self, x: Any, y: Array) -> ProbabilityModel:
        labels = np.unique(y)
        if not np.all(np.isin(labels, (0.0, 1.0))):
            raise ValueError("a classifier reward model needs 0/1 rewards; use a regressor")
        if len(labels) == 1:  # one class in this fold: predict it
            self._constant = float(labels[0])
            return self
        self._constant = None
        self.classifier.fit(x, y.astype(np.int64))
        return self

    def predict(self, x: Any) -> Array:
        if self._constant is not None:
            return np.full(x.shape[0], self._constant)
        out: Array = self.classifier.predict_proba(x)[:, 1]
        return out


def _logistic(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return ProbabilityModel(LogisticRegression(C=1.0, max_iter=1000))


def _hgb_classifier(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return ProbabilityModel(HistGradientBoostingClassifier(max_iter=100, random_state=seed))


REWARD_MODELS: dict[str, RegressorFactory] = {
    "hgb": _hist_gbm,
    "ridge": _ridge,
    "random-forest": _random_forest,
    "logistic": _logistic,
    "hgb-classifier": _hgb_classifier,
}
LINEAR_MODELS = ("ridge", "logistic")
"""Models that cannot learn context x action interactions by themselves."""


def _design(
    data: BanditData,
    rows: NDArray[np.int64],
    action: NDArray[np.int64],
    position: NDArray[np.int64] | None,
) -> Array:
    """Features of (context, action[, position]): context, then the action's features or a
    one-hot, then a one-hot position. Ridge gets context x action products too."""
    parts: list[Array] = []
    if data.context is not None:
        parts.append(data.context[rows])
    if data.action_features is not None:
        parts.append(data.action_features[action])
    else:
        parts.append(np.eye(data.n_actions)[action])
    if position is not None:
        parts.append(np.eye(data.len_list)[position])
    return np.hstack(parts) if parts else np.zeros((len(rows), 0))


def cross_fit_rewards(
    data: BanditData,
    *,
    model: str | RegressorFactory = "hgb",
    n_folds: int = 3,
    seed: int = 0,
    interactions: bool | None = None,
) -> Array:
    """q(x_i, a[, l]) for every row and action (and position): shape (n, A) or (n, A, L).

    ``interactions`` adds context x one-hot-action products to the features (on by default
    for the linear model, which cannot learn them by itself)."""
    factory = REWARD_MODELS[model] if isinstance(model, str) else model
    if interactions is None:
        interactions = model in LINEAR_MODELS
    n, n_actions = data.n_rows, data.n_actions
    slots = data.len_list if data.position is not None else 1
    rng = np.random.default_rng(seed)
    folds = rng.permutation(n) % max(n_folds, 1)
    out = np.empty((n, n_actions, slots))

    def features(
        rows: NDArray[np.int64], action: NDArray[np.int64], position: NDArray[np.int64] | None
    ) -> Array:
        x = _design(data, rows, action, position)
        if interactions and data.context is not None:
            onehot = np.eye(n_actions)[action]
            cross = (data.context[rows][:, :, None] * onehot[:, None, :]).reshape(len(rows), -1)
            x = np.hstack([x, cross])
        return x

    for k in range(max(n_folds, 1)):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k) if n_folds > 1 else test
        reg = factory(seed + k)
        pos_train = data.position[train] if data.position is not None else None
        reg.fit(features(train, data.action[train], pos_train), data.reward[train])
        for a in range(n_actions):
            acts = np.full(len(test), a, dtype=np.int64)
            for slot in range(slots):
                pos = None
                if data.position is not None:
                    pos = np.full(len(test), slot, dtype=np.int64)
                out[test, a, slot] = reg.predict(features(test, acts, pos))
    return out if data.position is not None else out[:, :, 0]


def _joined_features(
    context: dict[str, Any], action_id: str, action_features: dict[str, Any], interactions: bool
) -> dict[str, Any]:
    """One (context, action) as named features: strings become one-hots (DictVectorizer)."""
    feats: dict[str, Any] = {f"c:{k}": v for k, v in context.items()}
    feats["action"] = action_id
    feats.update({f"a:{k}": v for k, v in action_features.items()})
    if interactions:
        for k, v in context.items():
            key = f"c:{k}|a={action_id}"
            if isinstance(v, str):
                feats[f"{key}={v}"] = 1.0
            else:
                feats[key] = v
    return feats


def cross_fit_joined_rewards(
    log: JoinedLog,
    *,
    model: str | RegressorFactory = "ridge",
    n_folds: int = 3,
    seed: int = 0,
    interactions: bool | None = None,
) -> Array:
    """The same for recloop's own joined log, whose contexts and actions are named features
    (dicts) and whose action sets vary: q for each decision's own actions, padded with 0."""
    from sklearn.feature_extraction import DictVectorizer

    factory = REWARD_MODELS[model] if isinstance(model, str) else model
    if interactions is None:
        interactions = model in LINEAR_MODELS
    data = log.data
    flat_ctx = [flatten_features(c) for c in log.contexts]
    rows_of: list[list[dict[str, Any]]] = [
        [_joined_features(ctx, a.id, flatten_features(a.features), interactions) for a in acts]
        for ctx, acts in zip(flat_ctx, log.actions, strict=True)
    ]
    logged = [rows[int(a)] for rows, a in zip(rows_of, data.action, strict=True)]
    n = data.n_rows
    folds = np.random.default_rng(seed).permutation(n) % max(n_folds, 1)
    out = np.zeros((n, data.n_actions))
    sparse = model in LINEAR_MODELS
    for k in range(max(n_folds, 1)):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k) if n_folds > 1 else test
        vec = DictVectorizer(sparse=sparse)
        x_train = vec.fit_transform([logged[i] for i in train])
        reg = factory(seed + k)
        reg.fit(x_train, data.reward[train])
        flat = [(i, j, f) for i in test for j, f in enumerate(rows_of[i])]
        if not flat:
            continue
        pred = reg.predict(vec.transform([f for _, _, f in flat]))
        for (i, j, _), value in zip(flat, pred, strict=True):
            out[i, j] = value
    return out
