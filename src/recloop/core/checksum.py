"""Model blobs are checked against the digest stored with them before anything loads them.

Vowpal Wabbit loads a model file cut to 50-99% of its bytes without complaint, so a
truncated or corrupted blob would otherwise be served, or resumed by the learner, as if
it were good. The digest is written by the model store at ``put``.
"""

from __future__ import annotations

import hashlib

from recloop.core.errors import ModelRejectedError
from recloop.core.protocols import ModelStore, ModelVersion


def verified_model(models: ModelStore, version: str) -> tuple[ModelVersion, bytes]:
    """``models.get(version)``, raising ModelRejectedError if its bytes fail their digest."""
    meta, blob = models.get(version)
    if hashlib.sha256(blob).hexdigest() != meta.sha256:
        raise ModelRejectedError(f"model version {version} fails its checksum")
    return meta, blob
