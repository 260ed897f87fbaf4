"""Matryoshka evaluation: every task again at each embedding width (the leading `dims` dimensions, re-normalised).

A model trained with `stages.contrastive.loss.matryoshka_dims` is meant to be used truncated; this measures what each
width keeps. With the embedding cache on (`embedding_cache`, the default) the full embeddings are computed once
per text and every width reads them back; each width is its own mteb model (`<name>-d<dims>`), so result caches
never mix widths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder

from bireco.errors import ConfigError


class TruncatedEncoder(AbsEncoder):
    """An mteb encoder's embeddings cut to their first `dims` dimensions and L2-normalised again.

    Args:
        model: any mteb encoder (bireco's `MtebEncoder`, or a test's).
        dims: the width to keep.
    """

    def __init__(self, model: Any, dims: int) -> None:
        width = model.mteb_model_meta.embed_dim
        if width is not None and not 0 < dims <= width:
            raise ConfigError(f"eval.dims: {dims} is not a width of a {width}-dimensional embedding")
        self.model, self.dims = model, dims
        meta = model.mteb_model_meta
        self.mteb_model_meta = meta.model_copy(update={"name": f"{meta.name}-d{dims}", "embed_dim": dims})

    def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        full = np.asarray(self.model.encode(inputs, **kwargs), dtype=np.float32)
        cut = full[:, : self.dims]
        norms = np.linalg.norm(cut, axis=1, keepdims=True)
        return cut / np.maximum(norms, 1e-12)
