"""Padding efficiency: real tokens / computed tokens, with and without length-aware batching.

Computed tokens are what the model runs on: every padded tensor of a batch costs rows × its longest row. The
lengths are the collator's exact token counts (template, instruction, truncation), so no batch needs collating.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def efficiency(batches: Sequence[Sequence[int]], lengths: Sequence[Sequence[int]]) -> float:
    """Σ real tokens / Σ computed tokens over `batches` (row indices); `lengths[i]` = row i's padded fields.

    A field that is empty in every row of a batch (e.g. no row has a negative) is not collated: it costs nothing.
    Rows with an empty field inside a batch where others have one are dropped from that tensor by the collator
    (negatives are optional), so they cost nothing either.
    """
    real = computed = 0
    for b in batches:
        for f in range(len(lengths[b[0]])):
            present = [lengths[i][f] for i in b if lengths[i][f] > 0]
            if present:
                real += sum(present)
                computed += len(present) * max(present)
    if computed == 0:
        raise ValueError("no tokens in these batches")
    return real / computed


def measure(shared: Path | None, quick: bool) -> dict[str, Any]:
    """Efficiency over one epoch of the real pairs, for Stage I's and Stage II's collators and batch sizes."""
    from datasets import Dataset
    from omegaconf import OmegaConf

    from benchmarks import fixtures as fx
    from bireco.data.collate import PairCollator
    from bireco.data.datamodule import padded_lengths, resolve_instructions
    from bireco.data.sampler import HomogeneousBatchSampler
    from bireco.models.templates import Template

    found = fx.real_pairs(shared)
    if isinstance(found, str):
        return {"value": None, "reason": found}
    rows, cfg, tok = found
    bound = Template(**OmegaConf.to_container(cfg.template, resolve=True)).bind(tok)
    sources = [r["source"] for r in rows]
    instr = resolve_instructions(
        sorted(set(sources)), OmegaConf.to_container(cfg.data.sources, resolve=True), cfg.data.default_instruction
    )
    data = Dataset.from_list(rows)
    grouping = int(cfg.data.length_grouping)
    out: dict[str, Any] = {"length_grouping": grouping, "max_length": int(cfg.model.max_length), "rows": len(rows)}
    for stage in ("reconstruction", "contrastive"):
        st = cfg.stages[stage]
        collator = PairCollator(bound, instr, tok.pad_token_id, int(cfg.model.max_length), bool(st.with_negatives))
        lengths = padded_lengths(data, collator)
        res = {"batch_size": int(st.batch_size), "fields": ["positive", *(["negative"] * st.with_negatives), "query"]}
        for name, g in (("with_length_grouping", grouping), ("without", 0)):
            sampler = HomogeneousBatchSampler(
                sources, int(st.batch_size), seed=int(cfg.seed), lengths=lengths, length_grouping=g
            )
            res[name] = efficiency(list(sampler), lengths)
        out[stage] = res
    # headline: Stage I (query + document, its batch size); Stage II pads three weakly correlated fields and is
    # reported next to it, never folded in
    out["value"] = out["reconstruction"]["with_length_grouping"]
    out["value_without_length_grouping"] = out["reconstruction"]["without"]
    return out
