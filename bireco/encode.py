"""`bireco-encode`: embed a jsonl file of texts into a .npy matrix, streaming, with the model's own template.

    bireco-encode model_dir=DIR input=texts.jsonl output=embeddings.npy [kind=query|document task=NAME]

Input: `.jsonl` or `.jsonl.gz`, one JSON object per line with the text in `text` (`text_field=` picks another
key, e.g. `text_field=query` for training rows); other keys are ignored, blank lines skipped. A bad line stops
the run naming `file:line` and the field. Row i of the output is the embedding of the i-th row (fp32,
L2-normalized unless `normalize=false`).

Why two passes: the first validates every row and counts them (nothing is encoded if line 9,000,000 is bad),
so the output can be a preallocated `.npy` memmap; the second reads `chunk_size` rows at a time, encodes them
in length-sorted batches and writes them in place. The file is written under a temp name and renamed at the
end, so a crash never leaves a truncated `embeddings.npy`.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bireco.data.formats import field_message, parse_json_object
from bireco.errors import UserError
from bireco.eval.models import EvalModel, load_encoder
from bireco.export import EXPORT_FILE, finished_run, run_prompts
from bireco.export.sentence_transformers import Prompt
from bireco.models.encoder import TextEncoder
from bireco.runs import Run, read_artifact_meta
from bireco.utils.io import atomic_path
from bireco.utils.iterate import batched

log = logging.getLogger(__name__)


class InputFormatError(UserError, ValueError):
    """A bad input row (the message names file:line and the field), or no input file."""


class EncodeSettingError(UserError, ValueError):
    """A `bireco-encode` setting that cannot work (kind, precision, sizes, an instruction for documents)."""


class ModelDirError(UserError, FileNotFoundError):
    """`model_dir=` is none of the folders `bireco-encode` can load."""


@dataclass
class ResolvedModel:
    """What to load, with its template and the named instructions it knows."""

    model: EvalModel
    prompts: dict[str, Prompt]


def resolve(model: str | Path, eval_cfg: Mapping[str, Any] | None = None) -> ResolvedModel:
    """`model_dir=`: a bireco-export folder, a pipeline run dir or a stage artifact (each records its template)."""
    p = Path(model)
    if (p / EXPORT_FILE).is_file():
        rec = json.loads((p / EXPORT_FILE).read_text())
        merged = p / "hf" / "merged"
        if read_artifact_meta(merged) is None:
            raise ModelDirError(f"{p}: exported without hf/merged (hf_merged=false); pass the run dir instead")
        prompts = {n: Prompt(v["instruction"], v["separator"]) for n, v in rec["prompts"].items()}
        m = EvalModel(str(merged), rec["template"], rec["pooling"], int(rec["max_length"]))
        return ResolvedModel(m, prompts)
    if Run(p).results() is not None:
        _, run_cfg, final = finished_run(p)
        m = EvalModel(str(final), run_cfg["template"], run_cfg["pooling"]["name"], int(run_cfg["model"]["max_length"]))
        return ResolvedModel(m, run_prompts(run_cfg, eval_cfg))
    meta = read_artifact_meta(p) if p.is_dir() else None
    if meta and isinstance(meta.get("template"), dict):
        return ResolvedModel(EvalModel(str(p), meta["template"], meta["pooling"], int(meta["max_length"])), {})
    raise ModelDirError(
        f"model_dir={p}: not a bireco-export folder ({EXPORT_FILE}), a run dir (results.json) or a stage artifact "
        "(artifact.json with its template)"
    )


def query_prompt(
    prompts: Mapping[str, Prompt], task: str | None, instruction: str | None, separator: str
) -> Prompt | None:
    """The instruction for queries: `instruction=` > `task=` (a prompt name) > the `query` prompt > none."""
    if instruction:
        return Prompt(instruction, separator)
    if task:
        for key in (task, f"{task}-query"):
            if key in prompts:
                return prompts[key]
        raise EncodeSettingError(f"task={task!r} is not a prompt of this model; known: {sorted(prompts)}")
    return prompts.get("query")


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def iter_texts(path: str | Path, text_field: str = "text") -> Iterator[str]:
    """Validated texts of a jsonl(.gz) file, in order, one line in memory at a time."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"input={path}: no such file")
    with _open(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            row = parse_json_object(raw.rstrip(b"\r\n"), where, InputFormatError)
            value = row.get(text_field)
            if value is None:
                raise InputFormatError(field_message(where, text_field, "missing (required)"))
            if not isinstance(value, str):
                raise InputFormatError(
                    field_message(where, text_field, f"must be a string, got {type(value).__name__}")
                )
            yield value


def count_texts(path: str | Path, text_field: str = "text") -> int:
    """First pass: validate every row and count them."""
    n = 0
    for _ in tqdm(iter_texts(path, text_field), desc="checking input", unit=" rows", leave=False):
        n += 1
    return n


def autocast_for(encoder: TextEncoder, precision: str):
    """bf16 autocast on a GPU that supports it (`auto`), always (`bf16`) or never (`fp32`)."""
    device = next(encoder.model.parameters()).device
    if precision == "fp32":
        return nullcontext(), "fp32"
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16), "bf16 autocast"
        return nullcontext(), "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), "bf16 autocast"
    raise EncodeSettingError(f"precision must be auto, fp32 or bf16, got {precision!r}")


def encode_file(
    encoder: TextEncoder,
    input_path: str | Path,
    output_path: str | Path,
    prompt: Prompt | None = None,
    text_field: str = "text",
    batch_size: int = 64,
    chunk_size: int = 10_000,
    normalize: bool = True,
    precision: str = "auto",
) -> int:
    """Embed every row of `input_path` into `output_path` (.npy, rows in input order). Returns the row count."""
    if chunk_size < 1 or batch_size < 1:
        raise EncodeSettingError("chunk_size and batch_size must be >= 1")
    n = count_texts(input_path, text_field)
    if n == 0:
        raise InputFormatError(f"{input_path}: no rows")
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dim = encoder.model.config.hidden_size
    ctx, used = autocast_for(encoder, precision)
    log.info("encoding %d rows of %s (%s, instruction: %r)", n, input_path, used, prompt and prompt.instruction)
    with atomic_path(out, suffix=".npy") as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        start = 0
        with tqdm(total=n, desc="encoding", unit=" texts") as bar, ctx:
            for chunk in batched(iter_texts(input_path, text_field), chunk_size):
                emb = encoder.encode(
                    chunk,
                    [prompt.instruction] * len(chunk) if prompt else None,
                    batch_size=batch_size,
                    normalize=normalize,
                    instruction_separator=prompt.separator if prompt else None,
                )
                mm[start : start + len(chunk)] = emb.float().numpy()
                start += len(chunk)
                bar.update(len(chunk))
        if start != n:
            raise RuntimeError(f"{input_path} changed while encoding ({n} rows counted, {start} read)")
        mm.flush()
        del mm
    return n


def run_encode(cfg: Any) -> Path:
    """The `bireco-encode` job: resolve the model, pick the instruction, encode the file."""
    if cfg.kind not in ("query", "document"):
        raise EncodeSettingError(f"kind must be 'query' or 'document', got {cfg.kind!r}")
    from omegaconf import OmegaConf

    missing = [f"{k}=" for k in ("model_dir", "input", "output") if OmegaConf.is_missing(cfg, k) or cfg[k] is None]
    if missing:
        raise EncodeSettingError(
            f"{', '.join(missing)} required: bireco-encode model_dir=RUN input=IN.jsonl output=OUT.npy"
        )
    if not Path(cfg.input).is_file():  # before the model loads (minutes for a 7B one)
        raise InputFormatError(f"input={cfg.input}: no such file")
    if Path(cfg.output).is_dir():  # was an IsADirectoryError once every row was encoded
        raise EncodeSettingError(f"output={cfg.output}: is a folder; output= is the .npy file to write")
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True) if cfg.get("eval") else None
    resolved = resolve(cfg.model_dir, eval_cfg)
    separator = cfg.instruction_separator or (eval_cfg or {}).get("instruction_separator") or ": "
    if cfg.kind == "document":
        if cfg.task or cfg.instruction:
            raise EncodeSettingError(
                "documents get no instruction (as in training); drop task=/instruction= or use kind=query"
            )
        prompt = None
    else:
        prompt = query_prompt(resolved.prompts, cfg.task, cfg.instruction, separator)
    encoder = load_encoder(resolved.model)
    n = encode_file(
        encoder,
        cfg.input,
        cfg.output,
        prompt,
        text_field=cfg.text_field,
        batch_size=cfg.batch_size,
        chunk_size=cfg.chunk_size,
        normalize=cfg.normalize,
        precision=cfg.precision,
    )
    log.info("wrote %d x %d embeddings to %s", n, encoder.model.config.hidden_size, cfg.output)
    return Path(cfg.output)
