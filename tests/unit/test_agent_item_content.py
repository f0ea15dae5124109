"""The deep RL agents' item representations from the feature generator: pre-trained item
vectors shaped by catalogue content place items nobody has engaged with yet (cold start),
where id-only vectors cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recloop import Loop
from recloop.agents.datasets import InteractionLog, build_trajectories
from recloop.agents.embeddings import EmbeddingConfig, pretrain_embeddings
from recloop.cli import app
from recloop.cli.agents import catalogue_content
from recloop.simulators.news import TOPICS, NewsCatalogue

pytestmark = pytest.mark.usefixtures("one_thread")
N_USERS = 100
TOPIC_NAMES = list(TOPICS)


def _world(tmp_path: Path) -> tuple[InteractionLog, list[str], list[str]]:
    """A catalogue of seen and cold articles (text only), and a log over the seen ones:
    user u engages (reward 1) with articles of topic u % 5 and skips the others."""
    news = NewsCatalogue(seed=5)
    seen, cold = news.articles(0, 30, "seen-"), news.articles(1, 30, "cold-")
    with Loop.open(
        tmp_path / "data", start=False, features={"fields": {"title": "text", "body": "text"}}
    ) as loop:
        loop.put_items([(a.id, a.fields) for a in seen + cold])
    articles = seen + cold
    topic = [TOPIC_NAMES.index(a.topic) for a in articles]
    rng = np.random.default_rng(0)
    users, items, rewards = [], [], []
    for u in range(N_USERS):
        for _ in range(30):
            i = int(rng.integers(len(seen)))
            users.append(u)
            items.append(i)
            rewards.append(1.0 if topic[i] == u % 5 else 0.0)
    n = len(items)
    log = InteractionLog(
        user=np.asarray(users, dtype=np.int64),
        item=np.asarray(items, dtype=np.int64),
        reward=np.asarray(rewards),
        timestamp=np.arange(n, dtype=np.float64),
        session=np.asarray(users, dtype=np.int64),
        propensity=None,
        user_ids=tuple(f"u{u}" for u in range(N_USERS)),
        item_ids=tuple(a.id for a in articles),
    )
    return log, [a.id for a in cold], [a.topic for a in articles]


def _cold_auc(users: np.ndarray, items: np.ndarray, cold: list[int], topics: list[str]) -> float:
    """How often a user scores a cold article of their topic above a cold one of another."""
    wins = []
    for u in range(N_USERS):
        scores = items[cold] @ users[u]
        mine = np.array([topics[i] == TOPIC_NAMES[u % 5] for i in cold])
        wins.append((scores[mine][:, None] > scores[~mine][None, :]).mean())
    return float(np.mean(wins))


def test_content_places_cold_items_where_id_vectors_cannot(tmp_path: Path) -> None:
    log, cold_ids, topics = _world(tmp_path)
    content, found = catalogue_content(tmp_path / "data" / "default", log.item_ids)
    assert found == len(log.item_ids) and content.shape == (len(log.item_ids), 128)
    data = build_trajectories(log)
    cold = [log.item_ids.index(i) for i in cold_ids]
    assert not set(data.action[data.reward > 0]) & set(cold)  # nobody engaged with them
    cfg = EmbeddingConfig(dim=16, epochs=60, seed=0)
    with_content, _ = pretrain_embeddings(data, cfg, item_content=content)
    ids_only, _ = pretrain_embeddings(data, cfg)
    auc_content = _cold_auc(with_content.users, with_content.items, cold, topics)
    auc_ids = _cold_auc(ids_only.users, ids_only.items, cold, topics)
    assert auc_content >= 0.9, auc_content
    assert 0.35 <= auc_ids <= 0.65, auc_ids  # a coin toss


def test_recloop_train_takes_item_features_from_a_catalogue(tmp_path: Path) -> None:
    log, _, _ = _world(tmp_path)
    path = tmp_path / "log.csv"
    rows = ["user,item,behaviour,timestamp"]
    for u, i, r, t in zip(log.user, log.item, log.reward, log.timestamp, strict=True):
        rows.append(f"u{u},{log.item_ids[i]},{'click' if r else 'skip'},{t}")
    path.write_text("\n".join(rows) + "\n")
    out = CliRunner().invoke(
        app,
        [
            "train", "--algo", "reinforce-topk", "--data", str(path), "--epochs", "1",
            "--no-plot", "-o", str(tmp_path / "run"),
            "--item-features", str(tmp_path / "data" / "default"),
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "item features: 150 of 150 items in the catalogue" in out.stdout
