"""Does evaluation build its inputs the way training did? Compare prompt shapes per task, warn or refuse.

A *shape* is the input with the text as `{text}` and the instruction as `{instruction}`
(`bireco.models.prompts`), so it differs exactly when anything but the instruction's wording differs: the
separator (the authors trained with `"; "` and evaluated with `": "`), the template, or which side gets an
instruction. Evaluation queries (and both texts of a symmetric task) are compared with the training queries of
every source; evaluation documents with the training documents.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from bireco.errors import UserError

log = logging.getLogger(__name__)

TRAINING_SIDE = {"query": "queries", "text": "queries", "document": "documents"}
PLURAL = {"query": "queries", "text": "texts", "document": "documents"}


class PromptMismatchError(UserError):
    """Evaluation prompts differ from training's and `eval.strict_prompts=true`."""


@dataclass(frozen=True)
class PromptMismatch:
    """One task side whose evaluation prompt has a shape training never used."""

    task: str
    side: str  # query | document | text (both sides of a symmetric task)
    evaluation: str  # the evaluation input, text as {text}
    training: str  # the closest training input (same instruction if any source had it), text as {text}
    evaluation_shape: str
    training_shape: str


def _training_records(training: dict[str, Any], side: str) -> list[dict[str, Any]]:
    recorded = training[TRAINING_SIDE[side]]
    return list(recorded.values()) if side != "document" else [recorded]


def find_mismatches(
    training: dict[str, Any], evaluation: dict[str, dict[str, dict[str, Any]]]
) -> list[PromptMismatch]:
    """Task sides of `evaluation` (task -> side -> prompt record) whose shape no training record of that side has.

    Args:
        training: a stage artifact's `prompts` (`bireco.models.prompts.training_prompts`).
    """
    out = []
    for task, sides in sorted(evaluation.items()):
        for side, rec in sides.items():
            candidates = _training_records(training, side)
            if any((c["shape"], c["strip"]) == (rec["shape"], rec["strip"]) for c in candidates):
                continue
            same = [c for c in candidates if c["instruction"] == rec["instruction"]]
            closest = (same or candidates)[0]
            out.append(PromptMismatch(task, side, rec["format"], closest["format"], rec["shape"], closest["shape"]))
    return out


def describe(mismatches: list[PromptMismatch]) -> list[str]:
    """One line per (side, evaluation shape, training shape), naming its tasks; a single task gets full strings."""
    groups: dict[tuple[str, str, str], list[PromptMismatch]] = {}
    for m in mismatches:
        groups.setdefault((m.side, m.evaluation_shape, m.training_shape), []).append(m)
    lines = []
    for (side, ev, tr), ms in groups.items():
        if len(ms) == 1:
            m = ms[0]
            lines.append(
                f"task {m.task}: evaluation {PLURAL[side]} are {m.evaluation!r}, training's were {m.training!r}"
            )
        else:
            names = ", ".join(m.task for m in ms)
            lines.append(f"tasks {names}: evaluation {PLURAL[side]} are {ev!r}, training's were {tr!r}")
    return lines


def check_prompts(
    training: dict[str, Any] | None, evaluation: dict[str, dict[str, dict[str, Any]]], strict: bool = False
) -> dict[str, Any]:
    """Compare, warn (or raise under `strict`), and return what summary.json records about it."""
    if not training:
        log.info("no training prompts recorded (a base model or an older artifact): evaluation prompts not compared")
        return {"compared": False, "mismatches": []}
    mismatches = find_mismatches(training, evaluation)
    lines = describe(mismatches)
    hint = (
        "evaluate as trained with e.g. 'eval.instruction_separator=\"; \"' / eval.instructions (or refuse with "
        "eval.strict_prompts=true)"
    )
    if lines and strict:
        raise PromptMismatchError("prompts differ from training (eval.strict_prompts=true): " + "; ".join(lines))
    for line in lines:
        log.warning("prompts differ from training: %s — %s", line, hint)
    return {"compared": True, "mismatches": [asdict(m) for m in mismatches]}
