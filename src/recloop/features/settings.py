"""The feature generator's settings (TOML ``[loops.NAME.features]``).

They live with the features, not in ``recloop.settings``, so the generator and the
catalogue read their settings without importing the server's: ``recloop.settings``
imports this module, never the other way round.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from recloop.features.spec import KINDS as FIELD_KINDS


class FeatureSettings(BaseModel):
    """The feature generator of a loop (TOML ``[loops.NAME.features]``): how raw item fields
    become features. Fields not named in ``fields`` are inferred from their values."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Field name -> kind: text, categorical, numeric, tags, timestamp or id "
        "(the item's id, not a feature).",
    )
    text_dim: int = Field(16, ge=1, le=384, description="Dimensions kept of each embedding.")
    text_reduction: Literal["pca", "random"] = Field(
        "pca",
        description="pca: fitted on the first batch of items (needs more items than "
        "text_dim, else a random projection); random: a seeded projection, no fitting.",
    )
    text_topics: int = Field(8, ge=0, le=256, description="Topic clusters (0: no topic id).")
    text_keywords: int = Field(0, ge=0, le=32, description="Top TF-IDF terms per text.")
    rare_min_count: int = Field(
        2,
        le=1_000_000,
        ge=1,
        description="Category values seen fewer times share one __rare__ bucket.",
    )
    numeric_bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric field.")
    catalogue: Literal["auto", "required", "off"] = Field(
        "auto",
        description="Actions given by id alone: auto = their catalogue features, and an "
        "id the catalogue does not hold is a plain action (counted as catalogue_misses); "
        "required = an unknown id is an error (422 unknown-item); off = ids are plain "
        "actions, the catalogue is not read. Only this setting decides: items stored by "
        "earlier requests never change how a bare id is treated.",
    )
    max_cached_items: int = Field(
        1_000_000,
        le=100_000_000,
        ge=1,
        description="Items kept in each process's memory (the rest: disk).",
    )
    hot_items: int = Field(
        20_000,
        le=10_000_000,
        ge=1,
        description="Of those, items kept decoded, ready to rank (the rest are compact JSON "
        "and decoded on use, a few microseconds).",
    )
    seed: int = 0

    @field_validator("fields")
    @classmethod
    def _kinds(cls, value: dict[str, str]) -> dict[str, str]:
        for name, kind in value.items():
            if kind not in FIELD_KINDS:
                raise ValueError(
                    f"field {name!r} has unknown kind {kind!r}; kinds: {list(FIELD_KINDS)}"
                )
        return value
