"""Give finished runs' Stage I reconstruction score its per-row F1, by decoding the same sample again.

Runs from before `reconstruction.json` kept each row's F1 (`per_row`) have only the means, so the demo's report
cannot put an interval on the true − shuffled gap. This decodes the same held-out sample (`held_out_sample`)
with the stage's saved weights, the same decoding settings and one CPU thread (as the end-of-stage score does),
checks that the means equal the stored ones, and only then adds the rows to the file (atomically). A mismatch
(other hardware or software than the run's) is reported and nothing is written: rows that do not belong to the
stored means would be a silent wrong result.

    python -m experiments.rescore_reconstruction RUNS_ROOT_OR_RUN [...]   # then: bireco-report RUNS_ROOT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bireco.data.datamodule import PairDataModule
from bireco.data.prepare import prepare_data
from bireco.lit.reconstruction_score import held_out_pairs, score_pairs
from bireco.reconstruct.cli import load_reconstructor, resolve_stage, stage_i_targets
from bireco.reconstruct.generate import DecodeConfig
from bireco.reconstruct.reconstructor import DIRECTIONS, Pair
from bireco.runs import PER_ROW_KEY, RECONSTRUCTION_FILE, Run, find_runs, read_json
from bireco.utils.io import atomic_write_json

STAGE = "reconstruction"
TOLERANCE = 1e-9  # the stored means and the rescored ones: equal up to the summation order


def sample_pairs(run_cfg: DictConfig, n_rows: int) -> list[Pair]:
    """The held-out rows the end-of-stage score decoded (the run's validation set, its instructions)."""
    data = prepare_data(run_cfg)
    stage = run_cfg.stages[STAGE]
    datamodule = PairDataModule(
        data.train_path,
        SimpleNamespace(instructions={}),  # only its instructions are used here
        batch_size=stage.batch_size,
        sources_cfg=OmegaConf.to_container(run_cfg.data.sources, resolve=True),
        default_instruction=run_cfg.data.default_instruction,
        val_path=data.val_path,
        val_rows=run_cfg.data.val_rows,
        seed=run_cfg.seed,
        on_bad_row=run_cfg.data.on_bad_row,
        max_rows_per_source=run_cfg.data.max_rows_per_source,
    )
    datamodule.setup("fit")
    return held_out_pairs(datamodule, n_rows)


def rescore(run_dir: Path) -> tuple[str, str]:
    """("written" | "skipped" | "differs", what happened) for one run."""
    run = Run(run_dir)
    stage = next((s for s in run.finished_stages() if s.name == STAGE), None)
    stored: dict[str, Any] | None = read_json(stage.file(RECONSTRUCTION_FILE)) if stage else None
    if stored is None:
        return "skipped", "no finished Stage I score"
    if PER_ROW_KEY in stored:
        return "skipped", "already has per-row scores"
    run_cfg = OmegaConf.create(run.config())
    pairs = sample_pairs(run_cfg, int(stored["rows"]))
    decode = DecodeConfig(max_new_tokens=int(stored["max_new_tokens"]))
    reconstructor = load_reconstructor(
        resolve_stage(run_dir, STAGE), run_cfg.model.dtype, decode, stage_i_targets(run_cfg)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the end-of-stage score on CPU (ReconstructionScore)
    try:
        scores, _, per_row = score_pairs(reconstructor, pairs, int(run_cfg.probe.reconstruction.batch_size))
    finally:
        torch.set_num_threads(threads)
    off = {
        f"{d}.{k}": (stored[d][k], scores[d][k])
        for d in DIRECTIONS
        for k in ("f1", "f1_shuffled", "loss", "loss_shuffled")
        if abs(stored[d][k] - scores[d][k]) > TOLERANCE
    }
    if off:
        detail = ", ".join(f"{k} stored {a:.6f} rescored {b:.6f}" for k, (a, b) in off.items())
        return "differs", f"rescored means differ from the stored ones ({detail}): nothing written"
    atomic_write_json(stage.file(RECONSTRUCTION_FILE), {**stored, PER_ROW_KEY: per_row})
    return "written", f"{len(pairs)} rows, means equal to the stored ones: per-row scores written"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="run folders, or folders above them")
    args = parser.parse_args(argv)
    failed = 0
    for root in args.roots:
        for folder in find_runs(root):
            status, what = rescore(folder.path)
            failed += status == "differs"
            print(f"{folder.path}: {status}: {what}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
