"""What every benchmark builds the same way: the composed config, the tiny model, batches, the reference.

Models and modules come from the real factory (`build_encoder` / `build_module` on the composed Hydra config),
so the benchmark times what `bireco-train` runs, not a re-implementation of it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerFast

from bireco.models.templates import Segment
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
LLAMA3_VOCAB = 128_256  # Llama-3's vocabulary: where the LM head dominates memory

_WORDS = "the a of cell gene protein study patients risk increase found data model effect level role".split()  # noqa: SIM905


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The training config as `bireco-train` composes it."""
    from bireco.utils.resolvers import register

    register()
    from bireco.conf import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(dev: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast (what `trainer.precision=bf16-mixed` does), or nothing for fp32."""
    if precision == "bf16-mixed":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    if precision == "32-true":
        return contextlib.nullcontext()
    raise ValueError(f"precision must be 'bf16-mixed' or '32-true', got {precision!r}")


def train_small_tokenizer(texts: list[str] | None = None, vocab: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (seconds); on generated sentences when no texts are given."""
    if texts is None:
        rng = random.Random(0)
        texts = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16))) for _ in range(300)]
    return train_tokenizer(texts, vocab, tempfile.mkdtemp(prefix="bireco-bench-tok-"))


def save_tiny_model(
    cfg: DictConfig, tokenizer: PreTrainedTokenizerFast, vocab_size: int | None = None, out_dir: str | None = None
) -> str:
    """The config's tiny Llama (vocabulary overridable), saved where `build_encoder` can load it from."""
    spec = TinyLlamaSpec(**OmegaConf.to_container(cfg.model.tiny, resolve=True))
    model = build_tiny_model(spec, tokenizer, vocab_size=vocab_size or spec.vocab_size)
    out = out_dir or tempfile.mkdtemp(prefix="bireco-bench-model-")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def uniform_side(batch: int, length: int, vocab: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A padding-free batch of random token ids laid out like the plain template: BOS, text, EOS.  (B, T) each"""
    ids = torch.randint(3, vocab, (batch, length), generator=gen)
    ids[:, 0], ids[:, -1] = 0, 1
    segs = torch.full((batch, length), int(Segment.TEXT))
    segs[:, 0], segs[:, -1] = int(Segment.TEMPLATE), int(Segment.EOS)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "segments": segs}


def to_device(batch: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    """Tensors (also in nested dicts) moved to `dev`; other values as they are."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        out[k] = to_device(v, dev) if isinstance(v, dict) else v.to(dev) if torch.is_tensor(v) else v
    return out


def real_tokens(batch: dict[str, Any], keys: tuple[str, ...]) -> int:
    return int(sum(int(batch[k]["attention_mask"].sum()) for k in keys if k in batch))


@cache
def reference_module() -> ModuleType:
    """experiments/reference_stage1.py (kept outside the package on purpose), imported from its file."""
    path = REPO / "experiments" / "reference_stage1.py"
    spec = importlib.util.spec_from_file_location("reference_stage1", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"the Stage I reference implementation is missing: {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def real_pairs(shared: Path | None) -> tuple[list[dict[str, Any]], DictConfig, PreTrainedTokenizerFast] | str:
    """The real training pairs with the tiny preset's config and a tokenizer trained on them, or why not."""
    from bireco.data.formats import iter_rows, list_row_files

    pairs = None if shared is None else Path(shared) / "train_pairs"
    if pairs is None or not pairs.is_dir():
        return f"no training pairs at {pairs} (pass --shared DIR)"
    rows = list(iter_rows(list_row_files(pairs)))
    cfg = compose_cfg(["model=tiny", "data=local", f"data.path={pairs}"])
    texts = [r[k] for r in rows for k in ("query", "positive", "negative") if r.get(k)]
    return rows, cfg, train_small_tokenizer(texts, int(cfg.model.tiny.vocab_size))
