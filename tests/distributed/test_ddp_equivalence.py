"""2-process DDP on CPU (gloo) == one process over the concatenated global batch, through the real Trainer.

Each scenario trains one optimizer step of the real stage module (tiny Llama, LoRA for Stage II, full
fine-tuning for Stage I) and compares the per-rank losses and every trainable parameter's gradient after
DDP's all-reduce with a single process that sees both ranks' rows. All scenarios share one 2-process start-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed.harness import (
    PLANTED_MASKED,
    Scenario,
    make_base_model,
    run_scenario,
    run_two_ranks,
    write_rows,
)

pytestmark = pytest.mark.integration
TOL = 2e-6

PLAIN = Scenario("contrastive")
GRAD_CACHE = Scenario("contrastive", chunk_size=3)
GRAD_CACHE_ACCUM = Scenario("contrastive", chunk_size=3, accumulate=2)
NO_GATHER = Scenario("contrastive", gather=False)
STAGE1 = Scenario("reconstruction")
# Stage I's anchor-gain monitor measures every step: the logged gain must be the mean over the ranks' batches
STOP_AT_ONCE = "stages.reconstruction.anchor_gain={every_n_steps: 1, window: 1, stop_at: -100}"
GAIN = Scenario("reconstruction", overrides=(STOP_AT_ONCE,))
DATA = Scenario("contrastive", from_datamodule=True)
DUPLICATES = Scenario("contrastive", duplicates=True)  # copies of positives on both ranks, masked
DUPLICATES_GC = Scenario("contrastive", duplicates=True, chunk_size=3)
UNMASKED = Scenario("contrastive", duplicates=True, overrides=("stages.contrastive.loss.mask_duplicates=false",))
MATRYOSHKA = (
    "stages.contrastive.loss.matryoshka_dims=[8,16,32]",
    "stages.contrastive.loss.matryoshka_weights=[1,0.5,0.25]",
)
MRL = Scenario("contrastive", overrides=MATRYOSHKA)
MRL_GC = Scenario("contrastive", chunk_size=3, overrides=MATRYOSHKA)
SCENARIOS = [
    PLAIN,
    GRAD_CACHE,
    GRAD_CACHE_ACCUM,
    NO_GATHER,
    STAGE1,
    GAIN,
    DATA,
    DUPLICATES,
    DUPLICATES_GC,
    MRL,
    MRL_GC,
]
# the single-process references (GradCache and no-gather runs are compared with the plain reference)
REFERENCES = {
    PLAIN: PLAIN,
    GRAD_CACHE: PLAIN,
    NO_GATHER: PLAIN,
    GRAD_CACHE_ACCUM: Scenario("contrastive", accumulate=2),
}
REFERENCES[STAGE1] = STAGE1
REFERENCES[DATA] = DATA
REFERENCES[DUPLICATES] = DUPLICATES
REFERENCES[DUPLICATES_GC] = DUPLICATES
REFERENCES[MRL] = MRL
REFERENCES[MRL_GC] = MRL


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("ddp")
    base = make_base_model(root / "base")
    write_rows(root / "rows")
    two = run_two_ranks(SCENARIOS, base, root)
    single = {ref: run_scenario(ref, base, world=1, rank=0) for ref in {*REFERENCES.values(), GRAD_CACHE, UNMASKED}}
    return {"two": {s: [two[r][i] for r in range(2)] for i, s in enumerate(SCENARIOS)}, "single": single}


def _assert_same_grads(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    assert len(want) > 0
    for name, g in want.items():
        assert g.abs().max() > 0, f"{name}: zero gradient, the comparison would prove nothing"
        # fp32; only the summation order differs: worst element within a few ulps of the tensor's scale
        err = float((got[name] - g).abs().max() / g.abs().max())
        assert err < TOL, f"{name}: max |diff| = {err:.2e} x max |grad|"


@pytest.mark.parametrize(
    "scenario",
    [PLAIN, GRAD_CACHE, STAGE1, MRL, MRL_GC],
    ids=["contrastive", "grad_cache", "reconstruction", "matryoshka", "matryoshka_grad_cache"],
)
def test_two_ranks_equal_one_process_over_the_global_batch(runs, scenario: Scenario) -> None:
    ranks, ref = runs["two"][scenario], runs["single"][REFERENCES[scenario]]
    # DDP leaves identical gradients on both ranks, equal to the single process's
    _assert_same_grads(ranks[0]["grads"], ranks[1]["grads"])
    _assert_same_grads(ranks[0]["grads"], ref["grads"])
    # the mean of the ranks' losses is the global loss (what DDP's gradient averaging differentiates)
    mean = (ranks[0]["losses"][0] + ranks[1]["losses"][0]) / 2
    assert mean == pytest.approx(ref["losses"][0], rel=1e-6)
    assert abs(ranks[0]["losses"][0] - ranks[1]["losses"][0]) > 1e-5  # the ranks had other rows
    # and that global loss is what gets logged (on every rank), not rank 0's share
    assert ranks[0]["logged"] == ranks[1]["logged"] == pytest.approx(ref["losses"][0], rel=1e-6)
    assert ref["logged"] == pytest.approx(ref["losses"][0], rel=1e-6)


def test_the_anchor_gain_is_the_mean_over_ranks_so_every_rank_stops_alike(runs) -> None:
    ranks = runs["two"][GAIN]
    local = [r["local_gain"] for r in ranks]
    assert abs(local[0] - local[1]) > 1e-4  # the ranks measured other rows
    for r in ranks:
        assert [s for s, _ in r["gains"]] == [0]  # one step, measured before it trained
        assert r["gains"][0][1] == pytest.approx((local[0] + local[1]) / 2, rel=1e-5, abs=1e-7)
        assert r["stopped_at"] == 1  # the stop fired on every rank after the same step
    # the monitor does not change training: the same gradients as Stage I without it
    _assert_same_grads(ranks[0]["grads"], runs["two"][STAGE1][0]["grads"])


def test_matryoshka_changes_the_objective(runs) -> None:
    """Control: the Matryoshka terms really enter the loss (the equivalence above is not the plain loss twice)."""
    assert runs["single"][MRL]["losses"][0] > runs["single"][PLAIN]["losses"][0] + 0.1


def test_grad_cache_with_accumulation_equals_plain_single_process(runs) -> None:
    ranks, ref = runs["two"][GRAD_CACHE_ACCUM], runs["single"][REFERENCES[GRAD_CACHE_ACCUM]]
    assert len(ranks[0]["losses"]) == len(ref["losses"]) == 2  # two micro-batches per optimizer step
    _assert_same_grads(ranks[0]["grads"], ref["grads"])
    _assert_same_grads(ranks[1]["grads"], ref["grads"])


def test_grad_cache_single_process_through_the_trainer(runs) -> None:
    ref, cached = runs["single"][PLAIN], runs["single"][GRAD_CACHE]
    assert cached["losses"][0] == pytest.approx(ref["losses"][0], rel=1e-6)
    _assert_same_grads(cached["grads"], ref["grads"])


def test_global_batch_is_one_source_split_across_ranks(runs) -> None:
    """The real PairDataModule under a 2-rank Trainer: each step's two rank batches come from one source, share
    no row, and together are exactly the global batch a single process would train on at that step."""
    ranks, single = runs["two"][DATA], runs["single"][DATA]
    assert len(single["queries"]) == len(ranks[0]["queries"]) == len(ranks[1]["queries"]) == 3
    for q0, q1, glob in zip(ranks[0]["queries"], ranks[1]["queries"], single["queries"], strict=True):
        assert len(q0) == len(q1) == 4 and len(set(glob)) == 8
        assert q0 + q1 == glob  # rank 0 takes the first half of the global batch, rank 1 the second
        assert len({q[0] for q in glob}) == 1, glob  # queries start with their source's name: "a3 …", "b7 …"
    assert len({tuple(q) for q in single["queries"]}) == 3  # three different global batches


def test_without_the_gather_the_gradient_differs(runs) -> None:
    """Control: per-rank in-batch negatives are *not* the global batch — the comparison above can tell."""
    ranks, ref = runs["two"][NO_GATHER], runs["single"][PLAIN]
    diffs = [(ranks[0]["grads"][n] - g).abs().max() / g.abs().max() for n, g in ref["grads"].items()]
    assert max(diffs) > 1e-2
    mean = (ranks[0]["losses"][0] + ranks[1]["losses"][0]) / 2
    assert mean < ref["losses"][0] - 0.1  # fewer candidates per query: an easier task


@pytest.mark.parametrize("scenario", [DUPLICATES, DUPLICATES_GC], ids=["plain", "grad_cache"])
def test_false_negatives_masked_across_ranks(runs, scenario: Scenario) -> None:
    """Copies of a query's positive on the other rank leave its softmax exactly as in one process over the global
    batch (whose masking equals the loss without the copies: tests/losses/test_false_negatives.py)."""
    ranks, ref = runs["two"][scenario], runs["single"][DUPLICATES]
    _assert_same_grads(ranks[0]["grads"], ref["grads"])
    _assert_same_grads(ranks[1]["grads"], ref["grads"])
    mean = (ranks[0]["losses"][0] + ranks[1]["losses"][0]) / 2
    assert mean == pytest.approx(ref["losses"][0], rel=1e-6)
    # the logged count is the whole global batch's, on every rank
    assert ranks[0]["masked"] == ranks[1]["masked"] == ref["masked"] == PLANTED_MASKED
    unmasked = runs["single"][UNMASKED]
    assert unmasked["masked"] is None  # nothing counted when masking is off
    assert unmasked["losses"][0] > ref["losses"][0] + 1e-3  # and the copies compete: the masking changed the loss
    assert runs["single"][PLAIN]["masked"] == 0  # random rows hold no copies


def test_harness_builds_what_it_claims(tmp_path: Path) -> None:
    """The Stage I ranks hold different numbers of words (so of target tokens) per side."""
    from tests.distributed.harness import global_rows

    rows = global_rows(STAGE1, 2, 0)
    r0, r1 = rows[:4], rows[4:]
    for side in ("query", "positive"):
        assert sum(len(r[side].split()) for r in r1) >= sum(len(r[side].split()) for r in r0) + 16
    negs = [r.get("negative") for r in global_rows(PLAIN, 2, 0)]
    assert negs[:4].count(None) == 0 and negs[4:].count(None) == 1
