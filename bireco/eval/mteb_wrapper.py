"""Our encoder as an mteb 2.x encoder: instructions for queries only, length-sorted batches, an embedding cache.

mteb hands us batches of texts per (task, split, subset, prompt type). Queries get the task's instruction
(documents get none, as in training); everything else — similarity, metrics, protocols — stays mteb's.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from bireco.models.encoder import TextEncoder
from bireco.models.prompts import prompt_record
from bireco.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


class MtebEncoder(AbsEncoder):
    """Adapter from `TextEncoder` to mteb's encoder protocol.

    Args:
        encoder: the trained embedder (any pooling/template it was trained with).
        name: model name for mteb's result files (`org/name` form).
        revision: content hash of the weights: mteb keys cached results by it, so a new checkpoint can never be
            served an older checkpoint's score.
        instructions: task name -> query instruction (None/missing = no instruction).
        instruction_separator: joins instruction and query at evaluation (the authors' code: ": ").
        batch_size: texts per forward pass.
        max_tokens: instead, at most this many (padded) tokens per forward pass (lengths sorted): memory follows
            tokens, so short texts share a pass and long ones split.
        padding_free: pack each pass into one row with restarting positions (`TextEncoder.encode`): no
            padding is computed (exact to 1e-5 in fp32; with flash attention 2 the attention runs over real
            tokens only, see `docs/performance.md`).
        cache_dir: embeddings of identical (weights, instruction, texts) are read back instead of re-encoded.
        symmetric_tasks: task types whose two sides are both "queries" (STS, pair classification, clustering,
            classification, summarization): every text gets the instruction there, as E5/LLM2Vec evaluation does.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        name: str,
        revision: str,
        instructions: Mapping[str, str | None] | None = None,
        instruction_separator: str = ": ",
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        max_tokens: int | None = None,
        padding_free: bool = False,
        symmetric_tasks: tuple[str, ...] = (
            "STS",
            "PairClassification",
            "Clustering",
            "Classification",
            "Summarization",
        ),
    ) -> None:
        self.encoder = encoder
        self.instructions = dict(instructions or {})
        self.separator = instruction_separator
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.padding_free = padding_free
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.symmetric_tasks = symmetric_tasks
        self.revision = revision
        self._prompts: dict[str | None, dict[str, Any]] = {}
        self.mteb_model_meta = ModelMeta(
            loader=None,
            name=name if "/" in name else f"bireco/{name}",
            revision=revision,
            release_date=None,
            languages=None,
            n_parameters=sum(p.numel() for p in encoder.model.parameters()),
            memory_usage_mb=None,
            max_tokens=encoder.max_length,
            embed_dim=encoder.model.config.hidden_size,
            license=None,
            open_weights=True,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch"],
            similarity_fn_name=ScoringFunction.COSINE,  # the enum: a plain string fails late inside mteb
            use_instructions=True,
            training_datasets=None,
        )

    def instruction_for(self, task_name: str, task_type: str, prompt_type: PromptType | None) -> str | None:
        """Queries (and both sides of symmetric tasks) get the task's instruction; documents never do."""
        if prompt_type == PromptType.document:
            return None
        if prompt_type is None and task_type not in self.symmetric_tasks:
            return None
        return self.instructions.get(task_name)

    def sides(self, task_name: str, task_type: str) -> dict[str, str | None]:
        """The instruction each side of a task gets: `text` for symmetric tasks, else `query` and `document`."""
        if task_type in self.symmetric_tasks:
            return {"text": self.instruction_for(task_name, task_type, None)}
        return {
            s.value: self.instruction_for(task_name, task_type, s) for s in (PromptType.query, PromptType.document)
        }

    def prompt(self, instruction: str | None) -> dict[str, Any]:
        """The prompt record (string, ids, hash) of texts encoded with `instruction` (`bireco.models.prompts`)."""
        if instruction not in self._prompts:
            self._prompts[instruction] = prompt_record(self.encoder.bound, instruction, self.separator)
        return self._prompts[instruction]

    def _cached(self, key: str) -> np.ndarray | None:
        if self.cache_dir is None:
            return None
        f = self.cache_dir / self.revision[:16] / f"{key}.npy"
        return np.load(f) if f.is_file() else None

    def _store(self, key: str, emb: np.ndarray) -> None:
        if self.cache_dir is None:
            return
        buf = io.BytesIO()
        np.save(buf, emb)
        atomic_write_bytes(self.cache_dir / self.revision[:16] / f"{key}.npy", buf.getvalue())

    def encode_texts(self, texts: list[str], instruction: str | None, desc: str = "encoding") -> np.ndarray:
        """Embeddings (fp32, L2-normalized) of texts with one instruction, through the cache."""
        # what decides the embeddings besides the weights: the prompt (template, instruction, separator, tokenizer),
        # the length cap, pooling and attention — the same as the runner's per-task `inputs_key`
        enc = self.encoder
        key = _digest(self.prompt(instruction)["sha256"], str(enc.max_length), enc.pooling_name, enc.attention, *texts)
        hit = self._cached(key)
        if hit is not None:
            return hit
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if _on_cuda(self.encoder) else nullcontext()
        with autocast:
            emb = self.encoder.encode(
                texts,
                [instruction] * len(texts) if instruction else None,
                batch_size=self.batch_size,
                max_tokens=self.max_tokens,
                padding_free=self.padding_free,
                progress=True,
                desc=desc,
                instruction_separator=self.separator,
            ).numpy()
        self._store(key, emb)
        return emb

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = [t for batch in inputs for t in batch["text"]]
        instruction = self.instruction_for(task_metadata.name, task_metadata.type, prompt_type)
        side = prompt_type.value if prompt_type is not None else "texts"
        return self.encode_texts(texts, instruction, desc=f"{task_metadata.name} {side}")


def _on_cuda(encoder: TextEncoder) -> bool:
    return next(encoder.model.parameters()).device.type == "cuda"
