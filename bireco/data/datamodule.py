"""One DataModule for every stage: validated rows -> Arrow (memory-mapped) -> homogeneous batches -> collator.

Rows go through `datasets` so a 1.5M-row mixture never has to fit in RAM; the Arrow cache is keyed by the
files' sizes and modification times, so an edited file is never served from a stale cache.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import lightning as L
from datasets import Dataset, Features, Value
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bireco.data.collate import PairCollator, WindowCollator
from bireco.data.formats import DataFormatError, iter_rows, list_row_files
from bireco.data.resumable import ResumableDataLoader
from bireco.data.sampler import HomogeneousBatchSampler

log = logging.getLogger(__name__)


# fixed schema: without it `datasets` guesses types from the first rows, and a mixture whose first 1,000 rows
# have no negative would fail on the first file that has one
ROW_FEATURES = Features({k: Value("string") for k in ("query", "positive", "negative", "source")})
# validation rows are shuffled once with this seed (not the run's: every seed and pipeline validates on the same
# batches of a given validation set)
VAL_ORDER_SEED = 0


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


def padded_lengths(rows: Dataset, collator: PairCollator, chunk: int = 8192) -> list[tuple[int, ...]]:
    """Per row, the token length of each tensor the collator pads: (positive, [negative,] query).

    Documents come first: they are the longest, so length grouping sorts by them first. Exact counts (template,
    instruction, truncation) — character counts miss the truncation at max_length and group far worse.
    """
    fields = ["positive", *(["negative"] if collator.with_negatives else []), "query"]
    out: list[tuple[int, ...]] = []
    for start in tqdm(range(0, len(rows), chunk), desc="token lengths", leave=False):
        part = rows[start : start + chunk]
        cols = []
        for f in fields:
            texts = part[f]
            instr = [collator.instructions.get(s) for s in part["source"]] if f == "query" else None
            enc = collator.template.encode_batch([t or "" for t in texts], instr, collator.max_length)
            cols.append([len(e.input_ids) if t else 0 for e, t in zip(enc, texts, strict=True)])
        out += list(zip(*cols, strict=True))
    return out


class PairDataModule(L.LightningDataModule):
    """(query, positive, negative?) rows for one stage.

    Args:
        path: folder (or file) of training jsonl files.
        collator: turns a list of rows into model inputs (its instructions are filled in `setup`).
        batch_size: per-rank (micro-)batch size.
        accumulate: micro-batches per optimizer step (the stage's gradient accumulation); each step's rows are
            one window of one source, collated together (`WindowCollator`).
        sources_cfg: source -> {instruction, ratio}; ratio None everywhere = proportional to size.
        default_instruction: for sources not in `sources_cfg`.
        val_path: held-out rows for validation; else `val_rows` rows are held out of the training files.
        seed: shuffling seed (epoch e uses seed + e).
        length_grouping: length-aware batching within each source, in global batches per mega-batch (0 = off);
            lengths are the collator's exact token counts, computed once per setup.
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
        length_grouping: int = 0,
        accumulate: int = 1,
    ) -> None:
        super().__init__()
        self.accumulate = accumulate
        self.length_grouping = length_grouping
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
        self._check_sources_fill_a_batch()
        log.info("training rows: %d from sources %s", len(self.train_set), sources)

    def _check_sources_fill_a_batch(self) -> None:
        """Fail in setup, naming files and counts, where a source has fewer training rows than one global batch.

        Every batch comes from one source, so such a source could never be sampled (the sampler refuses it too,
        but later and without the files). The files are re-read only on this error path.
        """
        assert self.train_set is not None
        num_replicas = self.trainer.world_size if self.trainer is not None else self.num_replicas
        global_batch = self.batch_size * self.accumulate * num_replicas
        small = {s: n for s, n in sorted(Counter(self.train_set["source"]).items()) if n < global_batch}
        if not small:
            return
        held_out = Counter(self.val_set["source"]) if self.val_set is not None and self.val_path is None else Counter()
        files: dict[str, Counter[str]] = {s: Counter() for s in small}
        for f in list_row_files(self.path):
            for row in iter_rows([f], self.on_bad_row, self.max_rows_per_source):
                if row["source"] in files:
                    files[row["source"]][str(f)] += 1
        lines = []
        for s, n in small.items():
            held = f" (+{held_out[s]} held out by data.val_rows)" if held_out[s] else ""
            where = ", ".join(f"{f} ({k} rows)" for f, k in files[s].items())
            lines.append(f"  source '{s}': {n} training rows{held}, from {where}")
        raise DataFormatError(
            f"{self.path}: sources with fewer training rows than one batch of {global_batch} rows "
            f"({self.batch_size} per rank{f' × {self.accumulate} accumulation' if self.accumulate > 1 else ''} × "
            f"{num_replicas} ranks):\n" + "\n".join(lines) + "\n"
            "lower the stage's batch_size, or drop or merge these sources"
        )

    def ratios(self) -> dict[str, float] | None:
        r = {s: c["ratio"] for s, c in self.sources_cfg.items() if isinstance(c, dict) and c.get("ratio") is not None}
        return r or None

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        # under a Trainer the world is known only now (DDP ranks are set up after the datamodule is built)
        num_replicas, rank = self.num_replicas, self.rank
        if self.trainer is not None:
            num_replicas, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = HomogeneousBatchSampler(
            self.train_set["source"],
            self.batch_size,
            ratios=self.ratios(),
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
            lengths=padded_lengths(self.train_set, self.collator) if self.length_grouping else None,
            length_grouping=self.length_grouping,
            accumulate=self.accumulate,
        )
        collate = self.collator if self.accumulate == 1 else WindowCollator(self.collator, self.batch_size)
        return ResumableDataLoader(self.train_set, sampler, self._train_progress, collate, self.accumulate)

    def _train_progress(self) -> tuple[int, int]:
        """(epoch, batches trained in it), as the Trainer counts them: what a checkpoint must resume after."""
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.processed

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        # fixed batches, one source per batch; partial batches kept (a lone row has no in-batch partner: skipped).
        # Each source's rows are in a fixed shuffled order, not the file's: the anchor gain's control decodes a row
        # from its in-batch neighbour's embedding, and files often list a query's positives (or a document's
        # queries) one after another — in file order the control would often be the same query and understate it.
        by_source: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.val_set["source"]):
            by_source[s].append(i)
        for ix in by_source.values():
            random.Random(VAL_ORDER_SEED).shuffle(ix)
        batches = [
            ix[i : i + self.val_batch_size]
            for _, ix in sorted(by_source.items())
            for i in range(0, len(ix), self.val_batch_size)
            if len(ix[i : i + self.val_batch_size]) > 1
        ]
        return DataLoader(self.val_set, batch_sampler=batches, collate_fn=self.collator, num_workers=0)
