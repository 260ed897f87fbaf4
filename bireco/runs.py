"""The run folder: what `bireco-train` writes, and the one module every tool reads it back through.

    <run>/
      config.yaml             the composed, resolved config (written when the run starts)
      results.json            written when the last stage finished: model, pipeline, stages, seed, base,
                              final_artifact, data (training / validation / probe folders), stage_results, probe
      failed.json             the failed attempt's error, stage and traceback (removed when the run restarts)
      stages/<i>-<name>/      one folder per stage; i is its place in pipeline.stages (compared as a number)
        artifact/             full weights or a LoRA adapter, the tokenizer, and artifact.json (kind, base,
                              template, pooling, max_length, stage, steps, prompts)
        stage_done.json       written last: stage, config_hash, init_from, artifact, steps, metrics, probe,
                              reconstruction; a stage is finished only with this file *and* its artifact
        checkpoints/last.ckpt periodic and SIGTERM saves (hpc_ckpt_*.ckpt: SLURM requeue saves)
        logs/metrics.csv      every logged metric (the CSV logger; a resumed stage appends)
        probe.jsonl           the retrieval probe over steps; probe_queries.json: the final per-query scores
        mteb_probe.jsonl      the in-training mteb probe
        reconstruction.json   the end-of-stage reconstruction score (true vs shuffled embeddings; per_row:
                              every scored row's F1, the paired units of the gap's interval)
      eval/summary.json       bireco-eval: per-task scores, category means, average, settings
      audit.json              bireco-audit run_dir=<run>: overlap of the training rows with each evaluation
                              task (settings, per-task exact / near counts and examples, training_datasets)

Plain files only (json / yaml): importing this module loads neither torch nor Lightning, so tables and reports
start in a moment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"
FAILED_FILE = "failed.json"
STAGES_DIR = "stages"
DONE_FILE = "stage_done.json"
ARTIFACT_DIR = "artifact"
ARTIFACT_FILE = "artifact.json"
EVAL_DIR = "eval"
SUMMARY_FILE = "summary.json"
PROBE_FILE = "probe.jsonl"
PROBE_QUERIES_FILE = "probe_queries.json"
MTEB_PROBE_FILE = "mteb_probe.jsonl"
RECONSTRUCTION_FILE = "reconstruction.json"
PER_ROW_KEY = "per_row"  # in RECONSTRUCTION_FILE: each scored row's F1, true and shuffled, per direction
METRICS_FILE = "logs/metrics.csv"
AUDIT_FILE = "audit.json"


class RunError(ValueError):
    """A folder is not (or not yet) what the caller needs: no run, unfinished, no such stage."""


def read_json(path: Path) -> dict[str, Any] | None:
    """A record of a run folder, None when absent; one that is not JSON is a `RunError` naming the file."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def read_artifact_meta(path: str | Path) -> dict[str, Any] | None:
    """The artifact.json of a bireco stage artifact, or None for a plain HF folder / hub name.

    An adapter whose base is an earlier stage of the same run records it relative to itself too
    (`base_in_run`); where that folder exists, `base` is read as it, so a copied or moved run loads its own
    weights (the absolute `base` would name the old place, or fail once that is gone)."""
    meta = read_json(Path(path) / ARTIFACT_FILE)
    if meta and meta.get("base_in_run"):
        here = (Path(path) / meta["base_in_run"]).resolve()  # `..` as the file system does (symlinked folders)
        if (here / ARTIFACT_FILE).is_file():
            meta = {**meta, "base": str(here)}
    return meta


def base_in_run(artifact: str | Path, base: str | Path) -> dict[str, str]:
    """`{"base_in_run": ../../<i>-<name>/artifact}` when `base` is a stage artifact of the run `artifact` belongs
    to (the same `stages/` folder), else nothing."""
    artifact, base = Path(artifact).absolute(), Path(base)
    if not base.is_dir() or base.absolute().parent.parent != artifact.parent.parent:
        return {}
    return {"base_in_run": os.path.relpath(base.absolute(), artifact)}


@dataclass(frozen=True)
class Stage:
    """One `stages/<index>-<name>/` folder of a run."""

    index: int
    name: str
    path: Path

    @property
    def folder(self) -> str:
        return self.path.name

    @property
    def done(self) -> dict[str, Any] | None:
        """The stage's done record, or None while it is unfinished."""
        return read_json(self.path / DONE_FILE)

    @property
    def finished(self) -> bool:
        return self.done is not None and (self.path / ARTIFACT_DIR / ARTIFACT_FILE).is_file()

    @property
    def artifact(self) -> Path:
        return self.path / ARTIFACT_DIR

    def file(self, name: str) -> Path:
        return self.path / name


def stage_folder(index: int, name: str) -> str:
    return f"{index}-{name}"


@dataclass(frozen=True)
class Run:
    """A run folder (see the module docstring for its layout)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def is_run(self) -> bool:
        return any((self.path / f).is_file() for f in (CONFIG_FILE, RESULTS_FILE, FAILED_FILE))

    def config(self) -> dict[str, Any]:
        """The run's resolved config as plain data."""
        f = self.path / CONFIG_FILE
        if not f.is_file():
            raise RunError(f"{self.path}: not a bireco run (no {CONFIG_FILE})")
        return yaml.safe_load(f.read_text()) or {}

    def results(self) -> dict[str, Any] | None:
        return read_json(self.path / RESULTS_FILE)

    def finished_results(self) -> dict[str, Any]:
        """results.json of a finished run, or an error naming the folder."""
        r = self.results()
        if r is None or not (self.path / CONFIG_FILE).is_file():
            raise RunError(f"{self.path}: not a finished pipeline run (needs {RESULTS_FILE} and {CONFIG_FILE})")
        return r

    def failed(self) -> dict[str, Any] | None:
        return read_json(self.path / FAILED_FILE)

    def stage(self, index: int, name: str) -> Stage:
        return Stage(index, name, self.path / STAGES_DIR / stage_folder(index, name))

    def stages(self) -> list[Stage]:
        """Every stage folder, in pipeline order (by index as a number: 10 comes after 9)."""
        found = []
        for d in (self.path / STAGES_DIR).glob("*-*"):
            index, _, name = d.name.partition("-")
            if d.is_dir() and index.isdigit():
                found.append(Stage(int(index), name, d))
        return sorted(found, key=lambda s: s.index)

    def finished_stages(self) -> list[Stage]:
        return [s for s in self.stages() if s.finished]

    def find_stage(self, key: str | None, also: Sequence[str] = ()) -> Stage:
        """A finished stage by name (`reconstruction`) or folder (`0-reconstruction`); None = the last one.
        `also`: the caller's other accepted names, offered with the stages when `key` is none of them."""
        done = self.finished_stages()
        if not done:
            raise RunError(f"{self.path}: no finished stage (no {STAGES_DIR}/*/{DONE_FILE} with its artifact)")
        matches = [s for s in done if key in (None, s.name, s.folder)]
        if not matches:
            choices = [s.name for s in done] + list(also)
            raise RunError(f"{self.path}: no finished stage '{key}'; choose one of {choices}")
        return matches[-1]

    def final_artifact(self) -> Path:
        """The last stage's artifact in this folder (a copied or moved run's own), else the recorded path."""
        results = self.finished_results()
        stages = list(results.get("stages") or [])
        if not stages:
            return Path(results["final_artifact"])
        return self.stage_artifact(len(stages) - 1, stages[-1], results["final_artifact"])

    def stage_artifact(self, index: int, name: str, recorded: str | Path) -> Path:
        """Stage `index`'s artifact in this folder when it is there, else the path its record names."""
        own = self.stage(index, name).artifact
        return own if (own / ARTIFACT_FILE).is_file() else Path(recorded)

    def base(self) -> str | None:
        """What the first stage started from (hub name, folder or the tiny preset's cached warm-up)."""
        stages = self.stages()
        done = stages[0].done if stages else None
        return (done or {}).get("init_from") or (self.results() or {}).get("base")

    def eval_summary(self, subdir: str = EVAL_DIR) -> dict[str, Any] | None:
        return read_json(self.path / subdir / SUMMARY_FILE)

    def audit(self) -> dict[str, Any] | None:
        """The run's contamination audit (`bireco-audit run_dir=<run>`), or None where none was run."""
        return read_json(self.path / AUDIT_FILE)

    def heldout_dir(self) -> Path | None:
        """The folder of held-out task folders the run recorded (the embedded default's held-out split)."""
        probe = ((self.results() or {}).get("data") or {}).get("probe_dir")
        return Path(probe).parent if probe else None


def find_runs(root: str | Path, max_depth: int = 3) -> list[Run]:
    """Run folders under `root` (itself included), never descending into a run (its eval/, .hydra/, stages/)."""
    root = Path(root)
    out: list[Run] = []

    def walk(d: Path, depth: int) -> None:
        run = Run(d)
        if run.is_run:
            out.append(run)
            return
        if depth < max_depth:
            for child in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
                walk(child, depth + 1)

    if root.is_dir():
        walk(root, 0)
    return out
