"""One DataModule for every stage: validated rows -> Arrow (memory-mapped) -> homogeneous batches -> collator.

Rows go through `datasets` so a 1.5M-row mixture never has to fit in RAM; the Arrow cache is keyed by the
files' sizes and modification times, so an edited file is never served from a stale cache.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
from datasets import Dataset, Features, Value
from torch.utils.data import DataLoader

from bireco.data.collate import PairCollator
from bireco.data.formats import iter_rows, list_row_files
from bireco.data.sampler import HomogeneousBatchSampler

log = logging.getLogger(__name__)


# fixed schema: without it `datasets` guesses types from the first rows, and a mixture whose first 1,000 rows
# have no negative would fail on the first file that has one
ROW_FEATURES = Features({k: Value("string") for k in ("query", "positive", "negative", "source")})


def _rows_generator(files: list[str], on_bad_row: str, max_rows_per_file: int | None, fingerprint: str):
    # `fingerprint` is unused here: it is part of gen_kwargs so that datasets' cache key changes with the files
    yield from iter_rows([Path(f) for f in files], on_bad_row, max_rows_per_file)


def load_rows(path_or_files: str | Path | list[Path], on_bad_row: str = "error", max_rows_per_file: int | None = None):
    """Validated rows of a folder / file(s) as a memory-mapped `datasets.Dataset`."""
    files = path_or_files if isinstance(path_or_files, list) else list_row_files(path_or_files)
    fingerprint = ";".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return Dataset.from_generator(
        _rows_generator,
        features=ROW_FEATURES,
        gen_kwargs={
            "files": [str(f) for f in files],
            "on_bad_row": on_bad_row,
            "max_rows_per_file": max_rows_per_file,
            "fingerprint": fingerprint,
        },
    )


def resolve_instructions(sources: list[str], configured: dict[str, Any], default: str | None) -> dict[str, str | None]:
    """Source -> query instruction; a source with none configured is an error unless a default is set."""
    out: dict[str, str | None] = {}
    missing = []
    for s in sources:
        entry = configured.get(s)
        instr = entry.get("instruction") if isinstance(entry, dict) else entry
        if instr is None and default is None:
            missing.append(s)
        out[s] = instr if instr is not None else default
    if missing:
        raise ValueError(
            f"no instruction for sources {missing}: add them under data.sources.<name>.instruction or set "
            f"data.default_instruction (configured: {sorted(configured)})"
        )
    return out


class PairDataModule(L.LightningDataModule):
    """(query, positive, negative?) rows for one stage.

    Args:
        path: folder (or file) of training jsonl files.
        collator: turns a list of rows into model inputs (its instructions are filled in `setup`).
        batch_size: per-rank batch size.
        sources_cfg: source -> {instruction, ratio}; ratio None everywhere = proportional to size.
        default_instruction: for sources not in `sources_cfg`.
        val_path: held-out rows for validation; else `val_rows` rows are held out of the training files.
        seed: shuffling seed (epoch e uses seed + e).
    """

    def __init__(
        self,
        path: str | Path,
        collator: PairCollator,
        batch_size: int,
        sources_cfg: dict[str, Any] | None = None,
        default_instruction: str | None = None,
        val_path: str | Path | None = None,
        val_rows: int = 0,
        val_batch_size: int | None = None,
        seed: int = 42,
        on_bad_row: str = "error",
        max_rows_per_source: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.collator = collator
        self.batch_size = batch_size
        self.sources_cfg = dict(sources_cfg or {})
        self.default_instruction = default_instruction
        self.val_path = Path(val_path) if val_path else None
        self.val_rows = val_rows
        self.val_batch_size = val_batch_size or batch_size
        self.seed = seed
        self.on_bad_row = on_bad_row
        self.max_rows_per_source = max_rows_per_source
        self.num_replicas = num_replicas
        self.rank = rank
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        rows = load_rows(self.path, self.on_bad_row, self.max_rows_per_source)
        if self.val_path is not None:
            self.train_set, self.val_set = rows, load_rows(self.val_path, self.on_bad_row)
        elif self.val_rows > 0:
            if self.val_rows >= len(rows):
                raise ValueError(
                    f"data.val_rows={self.val_rows} would hold out all {len(rows)} rows of {self.path}; lower it"
                )
            order = list(range(len(rows)))
            random.Random(self.seed).shuffle(order)
            self.val_set = rows.select(sorted(order[: self.val_rows]))
            self.train_set = rows.select(sorted(order[self.val_rows :]))
        else:
            self.train_set = rows
        sources = sorted(set(self.train_set["source"]) | set(self.val_set["source"] if self.val_set else []))
        self.collator.instructions = resolve_instructions(sources, self.sources_cfg, self.default_instruction)
        log.info("training rows: %d from sources %s", len(self.train_set), sources)

    def ratios(self) -> dict[str, float] | None:
        r = {s: c["ratio"] for s, c in self.sources_cfg.items() if isinstance(c, dict) and c.get("ratio") is not None}
        return r or None

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        sampler = HomogeneousBatchSampler(
            self.train_set["source"],
            self.batch_size,
            ratios=self.ratios(),
            seed=self.seed,
            num_replicas=self.num_replicas,
            rank=self.rank,
        )
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=self.collator, num_workers=0)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        # fixed, unshuffled, one source per batch; partial batches kept (a lone row has no in-batch partner: skipped)
        by_source: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.val_set["source"]):
            by_source[s].append(i)
        batches = [
            ix[i : i + self.val_batch_size]
            for _, ix in sorted(by_source.items())
            for i in range(0, len(ix), self.val_batch_size)
            if len(ix[i : i + self.val_batch_size]) > 1
        ]
        return DataLoader(self.val_set, batch_sampler=batches, collate_fn=self.collator, num_workers=0)
