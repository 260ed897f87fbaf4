"""The reconstruction score: token-level F1 of generated vs true text, and the teacher-forced loss.

F1 is over lowercased word tokens (`\\w+`, SQuAD-style bag of words), not model tokens, so scores compare across
tokenizers and models. The teacher-forced loss is Stage I's own loss for one row (same layout, same target
segments): how many nats per token the embedding leaves unexplained.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence

import torch
from torch import nn

from bireco.losses.lm_head import linear_cross_entropy_sum
from bireco.losses.reconstruction import anchored_hidden_states, target_mask

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lowercased word tokens; punctuation and whitespace only separate."""
    return _WORD.findall(text.lower())


def token_f1(predicted: str, reference: str) -> float:
    """Bag-of-words F1 (counts clipped, as SQuAD): 1.0 for identical word lists, 0.0 for disjoint ones.

    Two texts without words are identical (1.0); one without words against one with words scores 0.0.
    """
    p, r = words(predicted), words(reference)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def control_order(keys: Sequence[Hashable], seed: int = 0) -> list[int]:
    """For the shuffled control: `order[i]` is the row whose embedding row i is decoded from — never i itself.

    Why not "the previous row": evaluation files are often grouped by subject (the generated world's held-out
    pairs come three per person, one per source), so a neighbour's embedding describes the same person and the
    control would carry what it is meant to remove (measured: it hid most of the true-vs-shuffled F1 gap). Rows
    are deranged at random (a seeded cycle) among rows with the same key — the instruction, so the control's
    anchor comes from a row with the same instruction and only the pair differs; a key with one row joins the
    other lone rows (or, if it is the only one, a cycle of another key).

    Args:
        keys: one per row, e.g. its instruction.
        seed: the derangement's seed (the same keys and seed give the same order).

    Returns:
        `order` with `order[i] != i`, a permutation of the rows.
    """
    if len(keys) < 2:
        raise ValueError(f"a shuffled control needs >= 2 rows, got {len(keys)}")
    rng = random.Random(seed)
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    cycles = [g for g in groups.values() if len(g) > 1]
    lone = [g[0] for g in groups.values() if len(g) == 1]
    for cycle in cycles:
        rng.shuffle(cycle)
    if len(lone) > 1:
        rng.shuffle(lone)
        cycles.append(lone)
    elif lone:
        cycles[0].append(lone[0])
    order = list(range(len(keys)))
    for cycle in cycles:
        for row, source in zip(cycle, cycle[1:] + cycle[:1], strict=True):
            order[row] = source
    return order


@torch.inference_mode()
def teacher_forced_losses(
    model: nn.Module, anchors: torch.Tensor, side: dict[str, torch.Tensor], target_segments: Iterable[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: summed next-token loss of the side's target tokens given the anchor, and their count.

    Args:
        anchors: (B, H).
        side: right-padded batch with `input_ids`, `attention_mask`, `segments`.
        target_segments: which tokens count (Stage I's `target_segments`).

    Returns:
        ((B,) loss sums in fp32, (B,) target-token counts).
    """
    hidden = anchored_hidden_states(model, anchors, side["input_ids"], side["attention_mask"])  # (B, T, H)
    targets = target_mask(side["attention_mask"], side["segments"], list(target_segments))  # (B, T)
    weight = model.get_output_embeddings().weight  # (V, H)
    ids = side["input_ids"]
    sums = torch.stack(
        [linear_cross_entropy_sum(hidden[i][targets[i]], weight, ids[i][targets[i]]).float() for i in range(len(ids))]
    )  # (B,)
    return sums, targets.sum(dim=1)
