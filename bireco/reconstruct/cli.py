"""`bireco-reconstruct`: decode text back from a run's embeddings, one text or a file of pairs.

    bireco-reconstruct run_dir=RUN stage_name=reconstruction text="..." direction=q2d|d2q
    bireco-reconstruct run_dir=RUN stage_name=contrastive input=pairs.jsonl output=out.jsonl

`stage_name=` names a finished stage of the run (`reconstruction`, `contrastive`, or its folder name
`0-reconstruction`; default: the run's last stage), `base` for the weights the run started from, or `warmup` for
the tiny preset's warmed-up base (found through the first stage's `init_from`, which points into
`$BIRECO_CACHE/tiny/<hash>/`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bireco.data.formats import DataFormatError, parse_row
from bireco.errors import UserError
from bireco.reconstruct.generate import DecodeConfig
from bireco.reconstruct.reconstructor import DIRECTIONS, Pair, Reconstructor, summarize
from bireco.runs import Run, RunError, read_artifact_meta
from bireco.utils.io import atomic_path, atomic_write_json
from bireco.utils.iterate import batched

log = logging.getLogger("bireco.reconstruct")


class ReconstructError(UserError, ValueError):
    """Bad arguments or inputs for `bireco-reconstruct`."""


@dataclass
class StageWeights:
    """Which weights to decode with, and the template/pooling/length they were trained with."""

    stage: str
    path: str
    template: dict[str, Any]
    pooling: str
    max_length: int


def _base_names(run: Run) -> list[str]:
    """The names this command takes besides the stages: `base`, and `warmup` where the run's base is one."""
    base = run.base()
    meta = read_artifact_meta(base) if base and Path(base).is_dir() else None
    return ["base", "warmup"] if (meta or {}).get("stage") == "warmup" else ["base"]


def resolve_stage(run_dir: str | Path, stage: str | None) -> StageWeights:
    """The weights of `stage` in a pipeline run (see the module docstring for the accepted names)."""
    run = Run(run_dir)
    try:
        run_cfg = run.config()
        if stage in ("base", "warmup"):
            run.find_stage(None)  # a run with no finished stage has no recorded base either
            path = run.base()
            meta = read_artifact_meta(path) if path and Path(path).is_dir() else None
            if stage == "warmup" and (meta or {}).get("stage") != "warmup":
                raise ReconstructError(
                    f"{run.path}: its base {path} is not a warm-up artifact (only the tiny preset has one, and its "
                    "cache must still exist); use stage_name=base"
                )
        else:
            found = run.find_stage(stage, also=_base_names(run))
            path, meta = str(found.artifact), read_artifact_meta(found.artifact)
            stage = stage or found.name
    except RunError as e:
        raise ReconstructError(str(e)) from None
    if meta and isinstance(meta.get("template"), dict):
        return StageWeights(stage, str(path), meta["template"], meta["pooling"], int(meta["max_length"]))
    return StageWeights(
        stage, str(path), run_cfg["template"], run_cfg["pooling"]["name"], int(run_cfg["model"]["max_length"])
    )


def load_reconstructor(weights: StageWeights, dtype: str, decode: DecodeConfig, target_segments: list[str]):
    """Load the stage's weights (adapters merged) as a `Reconstructor` on the GPU when there is one."""
    from bireco.models.encoder import TextEncoder

    encoder = TextEncoder.from_artifact(weights.path, weights.template, weights.pooling, weights.max_length, dtype)
    return Reconstructor(encoder, decode, target_segments)


def instruction_lookup(run_cfg: DictConfig, override: str | None) -> Callable[[str], str | None]:
    """Source name -> query instruction, as training resolved it (or `instruction=` for every row)."""
    from bireco.data.datamodule import resolve_instructions

    if override is not None:
        return lambda source: override
    sources = OmegaConf.to_container(run_cfg.data.sources, resolve=True) or {}
    default = run_cfg.data.get("default_instruction")

    def lookup(source: str) -> str | None:
        try:
            return resolve_instructions([source], sources, default)[source]
        except ValueError:
            raise ReconstructError(
                f"no query instruction for source '{source}' in the run's config; pass instruction=\"...\" or "
                f"source=<one of {sorted(sources)}>"
            ) from None

    return lookup


def read_pairs(path: Path, default_source: str | None, lookup: Callable[[str], str | None]) -> Iterator[Pair]:
    """Validated (query, positive) rows; a bad row raises naming the file, line and field."""
    if not path.is_file():
        raise ReconstructError(f"{path}: no such file")
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                row = parse_row(raw.rstrip(b"\r\n"), f"{path}:{lineno}", default_source or path.stem)
                try:
                    instruction = lookup(row["source"])
                except ReconstructError as e:
                    raise ReconstructError(f"{path}:{lineno}: {e}") from None
                yield Pair(row["query"], row["positive"], instruction)


def reconstruct_file(
    rec: Reconstructor, pairs: Iterator[Pair], direction: str, input_path: Path, output: Path, batch_size: int
) -> dict[str, Any]:
    """Stream pairs -> `output` (jsonl, one record per row), written atomically; returns the overall summary.

    An input without rows is an error (nothing would be scored): no output file is written.
    """
    with open(input_path, "rb") as fh:
        total = sum(1 for line in fh if line.strip())
    records: list[dict[str, Any]] = []
    with atomic_path(output) as tmp, open(tmp, "w") as out:
        with tqdm(total=total, desc=f"reconstruct {direction}", unit="row") as bar:
            for batch in batched(pairs, batch_size):
                for pair, r in zip(batch, rec.run(batch, direction), strict=True):
                    row = {"query": pair.query, "positive": pair.positive, "direction": direction, **r}
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    records.append({k: r[k] for k in ("f1", "loss_sum", "tokens")})
                bar.update(len(batch))
        if not records:
            raise DataFormatError(f"{input_path}: no rows (empty file): nothing to reconstruct")
    return summarize(records)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Everything `bireco-reconstruct` does, for a composed config; returns what it printed as a dict."""
    if cfg.direction not in DIRECTIONS:
        raise ReconstructError(f"direction must be one of {list(DIRECTIONS)}, got {cfg.direction!r}")
    if (cfg.text is None) == (cfg.input is None):
        raise ReconstructError('give either text="..." or input=pairs.jsonl output=out.jsonl')
    if cfg.input is not None and cfg.output is None:
        raise ReconstructError("input= needs output=out.jsonl")
    if cfg.output is not None and Path(cfg.output).is_dir():  # was an IsADirectoryError after decoding every row
        raise ReconstructError(f"output={cfg.output}: is a folder; output= is the .jsonl file to write")
    if not cfg.run_dir:
        raise ReconstructError("run_dir= is required (a bireco-train output folder)")
    weights = resolve_stage(cfg.run_dir, cfg.stage_name)
    run_cfg = OmegaConf.create(Run(cfg.run_dir).config())
    lookup = instruction_lookup(run_cfg, cfg.instruction)
    try:
        decode = DecodeConfig(**OmegaConf.to_container(cfg.decode, resolve=True))
    except ValueError as e:  # its own message names the setting
        raise ReconstructError(f"decode.{e}") from None
    target_segments = stage_i_targets(run_cfg)
    pairs = None
    if cfg.input is not None:  # read (and refused) before the model loads
        if not Path(cfg.input).is_file():
            raise ReconstructError(f"input={cfg.input}: no such file")
        pairs = read_pairs(Path(cfg.input), cfg.source, lookup)
    rec = load_reconstructor(weights, run_cfg.model.dtype, decode, target_segments)
    log.info("decoding with stage '%s' (%s), %s", weights.stage, weights.path, cfg.direction)
    if cfg.text is not None:
        instruction = lookup(cfg.source) if cfg.source else lookup_default(lookup, run_cfg, cfg.instruction)
        q, p = (cfg.text, cfg.reference or "") if cfg.direction == "q2d" else (cfg.reference or "", cfg.text)
        result = rec.run([Pair(q, p, instruction)], cfg.direction)[0]
        out = {"stage": weights.stage, "direction": cfg.direction, "generated": result["generated"]}
        if cfg.reference is not None:
            out.update(f1=result["f1"], loss=result["loss"])
        return out
    input_path, output = Path(cfg.input), Path(cfg.output)
    summary = reconstruct_file(rec, pairs, cfg.direction, input_path, output, cfg.batch_size)
    summary = {"stage": weights.stage, "weights": weights.path, "direction": cfg.direction, **summary}
    summary_path = Path(cfg.summary or output.with_name(output.name.removesuffix(".jsonl") + ".summary.json"))
    atomic_write_json(summary_path, {**summary, "input": str(input_path), "output": str(output)})
    return summary


def lookup_default(lookup: Callable[[str], str | None], run_cfg: DictConfig, override: str | None) -> str | None:
    """The query instruction for a single text without `source=`: `instruction=`, the run's default instruction,
    or its only source's; several sources and no default is an error (which one would be a guess)."""
    if override is not None:
        return override
    default = run_cfg.data.get("default_instruction")
    sources = sorted(run_cfg.data.sources or {})
    if default is not None or not sources:
        return default
    if len(sources) > 1:
        raise ReconstructError(
            f"the run trained with several query instructions; pick one: source=<one of {sources}> or "
            'instruction="..."'
        )
    return lookup(sources[0])


FREE_TEXT_KEYS = ("text", "reference", "instruction")


def hydra_quote(value: str) -> str:
    """Quote a free text for a Hydra override so it arrives verbatim: commas, quotes, brackets, `=` and `${...}`
    would otherwise be parsed (a list, a sweep, an interpolation). Hydra unescapes backslashes only before a quote
    or at the end; OmegaConf reads `\\${` as a literal `${`."""
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    value = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    return "'" + value.replace("'", "\\'") + "'"


DEFAULT_TARGETS = ("template", "instruction", "text")  # the Stage I config's default (bireco/conf/stage)


def stage_i_targets(run_cfg: DictConfig) -> list[str]:
    """The target segments Stage I trained on, as the run's config records them (`stages.reconstruction.loss`;
    runs from before losses were objects: `stages.reconstruction`); the default for runs without Stage I."""
    for key in ("stages.reconstruction.loss.target_segments", "stages.reconstruction.target_segments"):
        found = OmegaConf.select(run_cfg, key)
        if found is not None:
            return list(found)
    return list(DEFAULT_TARGETS)


def quote_free_texts(argv: list[str]) -> list[str]:
    """Command line -> Hydra overrides with the free texts (`text=`, `reference=`, `instruction=`) quoted
    verbatim (`hydra_quote`); everything else is passed on as it is."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"{key}={hydra_quote(value)}" if key in FREE_TEXT_KEYS and eq else arg)
    return out
