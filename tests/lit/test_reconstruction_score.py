"""The reconstruction score written at the end of every stage of a real (tiny, few-step) pipeline run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from bireco.data.formats import iter_rows
from bireco.lit.reconstruction_score import ReconstructionScore, held_out_sample, score_pairs
from bireco.losses.reconstruction import bidirectional_reconstruction_loss
from bireco.models.backbone import BackboneSpec, load_backbone
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Segment, Template
from bireco.pipeline import prepare_data, run_pipeline
from bireco.reconstruct.reconstructor import Pair
from bireco.reconstruct.score import control_order
from tests.helpers import compose_cfg

pytestmark = pytest.mark.integration

N_ROWS = 4
OVERRIDES = ["pipeline=bireco", f"probe.reconstruction.n_rows={N_ROWS}", "probe.reconstruction.max_new_tokens=8"]
KEYS = {"f1", "loss", "f1_shuffled", "loss_shuffled"}


@pytest.fixture(scope="module")
def run(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("reconstruction_run")
    cfg = compose_cfg(OVERRIDES)
    return out, cfg, run_pipeline(cfg, out)


@pytest.mark.parametrize("stage", ["0-reconstruction", "1-contrastive"])
def test_each_stage_writes_logs_and_records_its_score(run, stage: str) -> None:
    out, _, _ = run
    stage_dir = out / "stages" / stage
    score = json.loads((stage_dir / "reconstruction.json").read_text())
    per_row = score.pop("per_row")
    assert score["stage"] == stage.split("-", 1)[1] and score["step"] == 3 and score["rows"] == N_ROWS
    for direction in ("q2d", "d2q"):
        assert set(score[direction]) == KEYS
        for key in ("f1", "f1_shuffled"):  # the rows' scores, whose mean is the reported one
            assert len(per_row[direction][key]) == N_ROWS
            assert sum(per_row[direction][key]) / N_ROWS == pytest.approx(score[direction][key], abs=1e-12)
        assert all(0.0 <= score[direction][k] <= 1.0 for k in ("f1", "f1_shuffled"))
        assert all(score[direction][k] > 0.0 for k in ("loss", "loss_shuffled"))
    assert len(score["examples"]) == 3 and {"q2d", "d2q_shuffled"} <= set(score["examples"][0])
    # the same record, without the rows, goes into stage_done.json (next to "probe") and to the loggers
    assert json.loads((stage_dir / "stage_done.json").read_text())["reconstruction"] == score
    with open(stage_dir / "logs" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("reconstruction/q2d_f1")]
    assert len(logged) == 1 and int(logged[0]["step"]) == 3
    assert float(logged[0]["reconstruction/d2q_loss_shuffled"]) == pytest.approx(score["d2q"]["loss_shuffled"])


def test_the_warmed_up_base_gets_a_score_too(run) -> None:
    _, _, results = run
    score = json.loads((Path(results["base"]).parent / "reconstruction.json").read_text())
    assert score["stage"] == "warmup" and set(score["q2d"]) == KEYS


def test_loss_is_stage1_loss_on_the_sampled_held_out_rows(run) -> None:
    """Recomputed independently with Stage I's batched loss (α = 1 / 0) on the sampled N validation rows."""
    out, cfg, _ = run
    score = json.loads((out / "stages" / "0-reconstruction" / "reconstruction.json").read_text())
    val = list(iter_rows([prepare_data(cfg).val_path]))
    rows = [val[i] for i in held_out_sample(len(val), N_ROWS)]
    assert len(val) > N_ROWS and rows != val[:N_ROWS]  # the sample is not the first rows
    model, tok = load_backbone(BackboneSpec(str(out / "stages" / "0-reconstruction" / "artifact")))
    enc = TextEncoder(model.eval(), tok, Template(**dict(cfg.template)), "eos", cfg.model.max_length)
    instr = [cfg.data.sources[r["source"]].instruction for r in rows]
    q, d = enc.tokenize([r["query"] for r in rows], instr), enc.tokenize([r["positive"] for r in rows])
    segs = [Segment[s.upper()] for s in cfg.stages.reconstruction.loss.target_segments]
    with torch.no_grad():
        e_q, e_d = enc(q["input_ids"], q["attention_mask"]), enc(d["input_ids"], d["attention_mask"])
        for order, suffix in ((list(range(N_ROWS)), ""), (control_order(instr), "_shuffled")):
            aq, ad = e_q[order], e_d[order]
            q2d = bidirectional_reconstruction_loss(model, aq, ad, q, d, 1.0, segs)["loss"]
            d2q = bidirectional_reconstruction_loss(model, aq, ad, q, d, 0.0, segs)["loss"]
            assert score["q2d"][f"loss{suffix}"] == pytest.approx(float(q2d), rel=1e-4)
            assert score["d2q"][f"loss{suffix}"] == pytest.approx(float(d2q), rel=1e-4)


class _WhoseAnchor:
    """A stand-in reconstructor: embeddings are one-hot row ids, and a row "decodes" (F1 1) exactly when the
    anchor it is given belongs to the same person — so F1 shuffled is the share of control rows about that person."""

    def __init__(self, pairs: list[Pair]) -> None:
        self.row = {t: i for i, p in enumerate(pairs) for t in (p.query, p.positive)}
        self.person = [p.query.split("-")[0] for p in pairs]

    def embed(self, texts: list[str], instructions: list[str | None]) -> torch.Tensor:
        return torch.eye(len(self.person))[[self.row[t] for t in texts]]

    def run(self, pairs: list[Pair], direction: str, anchors: torch.Tensor) -> list[dict]:
        sources = anchors.argmax(dim=1).tolist()
        same = [self.person[s] == self.person[self.row[p.query]] for p, s in zip(pairs, sources, strict=True)]
        return [{"generated": "", "f1": float(x), "loss_sum": 1.0 - x, "tokens": 1} for x in same]


def test_the_control_is_another_person_when_rows_come_grouped_by_person() -> None:
    """Held-out pairs come one per source for each person in turn: the neighbouring row (the old control) is the
    same person two times in three; the control must decode from another person's embedding."""
    pairs = [Pair(f"p{k}-q-{src}", f"p{k}-d-{src}", src) for k in range(5) for src in ("qa", "search", "para")]
    scores, _, per_row = score_pairs(_WhoseAnchor(pairs), pairs, batch_size=4)
    for direction in ("q2d", "d2q"):
        assert scores[direction]["f1"] == 1.0 and scores[direction]["f1_shuffled"] == 0.0
        assert scores[direction]["loss_shuffled"] == 1.0
        # every row, in sample order, not only the means: the units of the gap's paired interval
        assert per_row[direction] == {"f1": [1.0] * len(pairs), "f1_shuffled": [0.0] * len(pairs)}


def test_needs_two_rows_for_the_control(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_rows >= 2"):
        ReconstructionScore(tmp_path / "r.json", n_rows=1)


def test_only_the_named_stages_are_scored(bireco_cache: str, tmp_path: Path) -> None:
    cfg = compose_cfg([*OVERRIDES, "probe.reconstruction.stages=[reconstruction]"])
    run_pipeline(cfg, tmp_path)
    assert (tmp_path / "stages" / "0-reconstruction" / "reconstruction.json").exists()
    assert not (tmp_path / "stages" / "1-contrastive" / "reconstruction.json").exists()
    assert (
        json.loads((tmp_path / "stages" / "1-contrastive" / "stage_done.json").read_text())["reconstruction"] is None
    )


def test_the_sample_spreads_over_a_file_sorted_by_source() -> None:
    # 300 rows of one source, then 300 of another: the first 128 rows would all be the first source
    sample = held_out_sample(600, 128)
    assert sample == sorted(set(sample)) and len(sample) == 128
    assert 40 <= sum(i >= 300 for i in sample) <= 88
    assert held_out_sample(600, 128) == sample  # fixed: the same rows in every run and after every stage
    assert held_out_sample(5, 128) == [0, 1, 2, 3, 4]


def test_a_rescore_of_an_old_run_reproduces_its_rows_or_writes_nothing(run, tmp_path: Path) -> None:
    """experiments/rescore_reconstruction.py: a run from before per_row (its rows removed) gets exactly the rows the
    end-of-stage score kept; a run whose stored means the rescore does not reproduce keeps its file untouched."""
    from experiments.rescore_reconstruction import rescore

    out, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    score_file = copy / "stages" / "0-reconstruction" / "reconstruction.json"
    original = json.loads(score_file.read_text())
    old = {k: v for k, v in original.items() if k != "per_row"}
    score_file.write_text(json.dumps(old))
    status, what = rescore(copy)
    assert status == "written" and "means equal" in what
    assert json.loads(score_file.read_text()) == original
    assert rescore(copy) == ("skipped", "already has per-row scores")

    tampered = {**old, "q2d": {**old["q2d"], "f1": old["q2d"]["f1"] + 0.01}}
    score_file.write_text(json.dumps(tampered))
    status, what = rescore(copy)
    assert status == "differs" and "q2d.f1 stored" in what and "nothing written" in what
    assert json.loads(score_file.read_text()) == tampered
