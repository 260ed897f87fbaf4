"""Every config file composes; the fairness of the ablations holds at the config level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from bireco.config import ConfigError, validate_config
from bireco.distributed import deepspeed_available
from bireco.stage_settings import build_objective
from tests.helpers import CONF_DIR, compose_cfg

GROUP_FILES = sorted(
    (p.parent.name, p.stem) for p in Path(CONF_DIR).glob("*/*.yaml") if p.parent.name not in ("experiment", "eval")
)
EVAL_FILES = sorted(p.stem for p in Path(CONF_DIR).glob("eval/*.yaml"))
GROUP_OVERRIDE = {
    "model": "model={}",
    "template": "template={}",
    "pooling": "pooling={}",
    "data": "data={}",
    "pipeline": "pipeline={}",
    "trainer": "trainer={}",
    "logger": "logger={}",
    "probe": "probe={}",
    "stage": "stage@stages.reconstruction={}",
    "peft": "peft@stages.reconstruction.peft={}",
}


def _flat(cfg) -> dict:
    out = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return out


@pytest.mark.parametrize(("group", "name"), GROUP_FILES)
def test_every_config_file_composes_and_resolves(group: str, name: str) -> None:
    overrides = [GROUP_OVERRIDE[group].format(name)]
    if name in ("local", "echo_e5"):
        overrides.append("data.path=/nonexistent")
    cfg = compose_cfg(overrides, fast=False)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert cfg.pipeline.stages
    if group == "trainer" and name.startswith("deepspeed") and not deepspeed_available():
        with pytest.raises(ConfigError, match="DeepSpeed is not installed"):  # not a dependency: a clear error
            validate_config(cfg)
    elif (
        group == "model"
        and str(cfg.model.pretrained or "").startswith("../")
        and not Path(cfg.model.pretrained).is_dir()
    ):
        with pytest.raises(ConfigError, match="no such folder"):  # stories260k's ../shared folder is absent here
            validate_config(cfg)
    elif group != "stage":  # a warm-up or Stage II config in the Stage I slot is not a runnable pipeline
        validate_config(cfg)


def test_experiment_demo_composes() -> None:
    cfg = compose_cfg(["experiment=demo"], fast=False)
    assert cfg.model.name == "tiny" and cfg.data.kind == "synthetic"


def test_bireco_and_baseline_differ_only_in_the_stage_list() -> None:
    bireco = _flat(compose_cfg(["pipeline=bireco"], fast=False))
    baseline = _flat(compose_cfg(["pipeline=baseline"], fast=False))
    differing = {k for k in bireco.keys() | baseline.keys() if bireco.get(k) != baseline.get(k)}
    assert differing == {"pipeline.name", "pipeline.stages"}
    assert bireco["pipeline.stages"] == ["reconstruction", "contrastive"]
    assert baseline["pipeline.stages"] == ["contrastive"]


def test_the_budget_control_is_the_baseline_run_for_both_stages_steps() -> None:
    from bireco.stage_settings import stage_max_steps

    budget = compose_cfg(["pipeline=baseline_budget"], fast=False)
    baseline = compose_cfg(["pipeline=baseline"], fast=False)
    a, b = _flat(budget), _flat(baseline)
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == {
        "pipeline.name",
        "stages.contrastive.budget_of",
    }
    bireco = compose_cfg(["pipeline=bireco"], fast=False)
    both = stage_max_steps(bireco, "reconstruction") + stage_max_steps(bireco, "contrastive")
    assert stage_max_steps(budget, "contrastive") == both == 600  # the tiny preset: 400 + 200
    assert stage_max_steps(baseline, "contrastive") == 200
    # a command-line change of either stage's steps carries over to the control
    moved = compose_cfg(["pipeline=baseline_budget", "stages.reconstruction.max_steps=7"], fast=False)
    assert stage_max_steps(moved, "contrastive") == 207


def test_the_anchor_control_differs_from_bireco_only_in_the_anchor() -> None:
    control = _flat(compose_cfg(["pipeline=anchor_control"], fast=False))
    bireco = _flat(compose_cfg(["pipeline=bireco"], fast=False))
    differing = {k for k in control.keys() | bireco.keys() if control.get(k) != bireco.get(k)}
    assert differing == {"pipeline.name", "stages.reconstruction.loss.anchor"}
    assert (control["stages.reconstruction.loss.anchor"], bireco["stages.reconstruction.loss.anchor"]) == (
        "shuffled",
        "own",
    )


# the tiny preset (the default model) sets alpha 0.5; the paper presets keep 0.2 (tested below)
@pytest.mark.parametrize(("pipeline", "alpha"), [("only_q2d", 1.0), ("only_d2q", 0.0), ("bireco", 0.5)])
def test_direction_ablations_change_only_alpha(pipeline: str, alpha: float) -> None:
    ablation = _flat(compose_cfg([f"pipeline={pipeline}"], fast=False))
    bireco = _flat(compose_cfg(["pipeline=bireco"], fast=False))
    differing = {k for k in bireco if bireco[k] != ablation[k]}
    assert ablation["stages.reconstruction.loss.alpha"] == alpha
    assert differing <= {"pipeline.name", "stages.reconstruction.loss.alpha"}


@pytest.mark.parametrize(
    ("model", "template", "s1", "s2"),
    [  # Stage II: the paper's global batch 1024 as one pool — 128 rows per GPU, GradCache chunks where memory asks
        ("llama3.2-1b", "llama3", (32, 2), (128, 1, None)),
        ("qwen2.5-1.5b", "qwen2", (32, 4), (128, 1, None)),
        ("llama3.2-3b", "llama3", (16, 8), (128, 1, 64)),
        ("mistral-7b", "mistral", (1, 64), (128, 1, 32)),
        ("llama3.1-8b", "llama3", (1, 64), (128, 1, 32)),
    ],
)
def test_paper_presets_carry_the_paper_settings(model: str, template: str, s1, s2) -> None:
    cfg = compose_cfg([f"model={model}"], fast=False)
    rec, con = cfg.stages.reconstruction, cfg.stages.contrastive
    assert cfg.template.name == template
    assert (rec.batch_size, rec.accumulate_grad_batches) == s1
    assert (con.batch_size, con.accumulate_grad_batches, con.grad_cache.chunk_size) == s2
    assert con.pool == "global_batch" and cfg.model.master_dtype == "float32"
    assert (rec.max_steps, rec.optimizer.lr, rec.scheduler.warmup_steps, rec.loss.alpha) == (2000, 4e-5, 300, 0.2)
    assert (con.max_steps, con.optimizer.lr, con.scheduler.warmup_steps, con.loss.scale) == (1000, 2e-4, 300, 50.0)
    assert not rec.peft.enabled
    assert (con.peft.r, con.peft.alpha, con.peft.dropout) == (16, 32, 0.05)
    assert set(con.peft.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert cfg.model.max_length == 512 and cfg.pooling.name == "eos"


def test_template_override_beats_the_model_choice() -> None:
    assert compose_cfg(["model=qwen2.5-1.5b", "template=llama3"], fast=False).template.name == "llama3"


@pytest.mark.parametrize("name", EVAL_FILES)
def test_every_eval_config_composes(name: str) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[f"eval={name}", "run_dir=/some/run"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.eval.name == name and cfg.eval.kind in ("local", "mteb", "none")


# ---------------------------------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize(
    ("override", "group"),
    [
        ("model=llama3", "model"),
        ("template=chatml", "template"),
        ("pooling=cls", "pooling"),
        ("pipeline=stage2_only", "pipeline"),
        ("data=msmarco", "data"),
        ("trainer=tpu", "trainer"),
        ("peft@stages.contrastive.peft=qlora", "peft"),
        ("stage@stages.contrastive=infonce", "stage"),
    ],
)
def test_unknown_group_option_lists_the_valid_choices(override: str, group: str) -> None:
    """Hydra refuses an unknown preset/template/pooling/pipeline while composing, listing every option."""
    options = sorted(p.stem for p in Path(CONF_DIR).glob(f"{group}/*.yaml"))
    with pytest.raises(MissingConfigException) as info:
        compose_cfg([override], fast=False)
    msg = str(info.value)
    assert msg.startswith(f"In 'train': Could not find '{group}/{override.split('=')[1]}'\n"), msg
    assert f"Available options in '{group}':\n" + "".join(f"\t{o}\n" for o in options) in msg


def _reject(overrides: list[str]) -> str:
    cfg = compose_cfg(overrides)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    return str(info.value)


STAGES = "['reconstruction', 'contrastive']"
BAD_CONFIGS = {
    "unknown_stage": (
        ["pipeline.stages=[reconstruction,retrieval]"],
        f"pipeline.stages: unknown stage(s) ['retrieval']; choose from {STAGES} (or add one: "
        "+stage@stages.<name>=<config>)",
    ),
    "no_stage": (["pipeline.stages=[]"], f"pipeline.stages must be a non-empty list of stages from {STAGES}, got []"),
    "stage_twice": (
        ["pipeline.stages=[contrastive,contrastive]"],
        "pipeline.stages=['contrastive', 'contrastive']: stage(s) ['contrastive'] listed twice; each stage runs once",
    ),
    "stage_one_after_stage_two": (
        ["pipeline.stages=[contrastive,reconstruction]"],
        f"pipeline.stages=['contrastive', 'reconstruction']: stages run in the method's order {STAGES} "
        "(Stage II starts from Stage I's weights)",
    ),
    "stage_two_from_a_stage_not_run": (
        ["pipeline=baseline", "+stages.contrastive.init_from=reconstruction"],
        "stages.contrastive.init_from='reconstruction', but pipeline.stages=['contrastive'] (pipeline=baseline) "
        "starts 'contrastive' from the base model: each stage starts from the previous stage's artifact, the first "
        "from 'base'; choose a pipeline that runs 'reconstruction' right before 'contrastive', or drop "
        "stages.contrastive.init_from",
    ),
    "stage_one_from_stage_two": (
        ["pipeline=bireco", "+stages.reconstruction.init_from=contrastive"],
        "stages.reconstruction.init_from='contrastive', but pipeline.stages=['reconstruction', 'contrastive'] "
        "(pipeline=bireco) starts 'reconstruction' from the base model: each stage starts from the previous stage's "
        "artifact, the first from 'base'; choose a pipeline that runs 'contrastive' right before 'reconstruction', "
        "or drop stages.reconstruction.init_from",
    ),
    "alpha_above_one": (
        ["stages.reconstruction.loss.alpha=1.5"],
        "stages.reconstruction.loss.alpha must be a number in [0, 1], got 1.5",
    ),
    "alpha_below_zero": (
        ["pipeline=only_d2q", "stages.reconstruction.loss.alpha=-0.1"],
        "stages.reconstruction.loss.alpha must be a number in [0, 1], got -0.1",
    ),
    "alpha_not_a_number": (
        ["stages.reconstruction.loss.alpha=high"],
        "stages.reconstruction.loss.alpha must be a number in [0, 1], got 'high'",
    ),
    "lora_rank_on_full_finetuning": (
        ["+stages.reconstruction.peft.r=8"],
        "stages.reconstruction.peft: LoRA setting(s) r=8 on a stage configured for full fine-tuning "
        "(stages.reconstruction.peft.enabled=false); choose peft@stages.reconstruction.peft=lora for LoRA, or "
        "peft@stages.reconstruction.peft=none (no LoRA keys) for full fine-tuning",
    ),
    "lora_switched_off_but_configured": (
        ["stages.contrastive.peft.enabled=false", "stages.contrastive.peft.target_modules=[q_proj]"],
        "stages.contrastive.peft: LoRA setting(s) r=16, alpha=32, dropout=0.05, target_modules=['q_proj'] on a "
        "stage configured for full fine-tuning (stages.contrastive.peft.enabled=false); choose "
        "peft@stages.contrastive.peft=lora for LoRA, or peft@stages.contrastive.peft=none (no LoRA keys) for full "
        "fine-tuning",
    ),
    "lora_rank_zero": (
        ["stages.contrastive.peft.r=0"],
        "stages.contrastive.peft.r (LoRA rank) must be a positive integer, got 0",
    ),
    "lora_dropout_one": (
        ["stages.contrastive.peft.dropout=1.0"],
        "stages.contrastive.peft.dropout must be a number in [0, 1), got 1.0",
    ),
    "lora_without_targets": (
        ["stages.contrastive.peft.target_modules=[]"],
        "stages.contrastive.peft: LoRA needs target_modules (model.lora_target_modules)",
    ),
    "unknown_pooling_name": (
        ["pooling.name=cls"],
        "pooling.name='cls': choose one of ['eos', 'mean', 'weighted_mean']",
    ),
    "unknown_dtype": (
        ["model.dtype=float64"],
        "model.dtype='float64': choose one of ['float32', 'bfloat16', 'float16']",
    ),
    "tiny_and_pretrained": (
        ["model.pretrained=meta-llama/Llama-3.2-1B-Instruct"],
        "model 'tiny': set exactly one of model.pretrained (hub name or folder) or model.tiny "
        "(got pretrained='meta-llama/Llama-3.2-1B-Instruct', tiny=set)",
    ),
    "neither_tiny_nor_pretrained": (
        ["model=llama3.2-1b", "model.pretrained=null"],
        "model 'llama3.2-1b': set exactly one of model.pretrained (hub name or folder) or model.tiny "
        "(got pretrained=None, tiny=None)",
    ),
    "longer_than_the_tiny_positions": (
        ["model.max_length=1024"],
        "model.max_length=1024 exceeds model.tiny.max_position_embeddings=512: the tiny model has no positions "
        "for the longer sequences",
    ),
    "unknown_on_bad_row": (
        ["data.on_bad_row=warn"],
        "data.on_bad_row='warn': choose 'error' (stop at the first bad row, the default) or 'skip' (skip bad rows "
        "and report how many per file)",
    ),
    "unknown_target_segment": (
        ["stages.reconstruction.loss.target_segments=[text,body]"],
        "stages.reconstruction.loss.target_segments=['text', 'body']: choose a non-empty subset of "
        "['template', 'instruction', 'text', 'eos'] (unknown: ['body'])",
    ),
    "zero_batch": (
        ["stages.contrastive.batch_size=0"],
        "stages.contrastive.batch_size must be a positive integer, got 0",
    ),
    "zero_steps": (
        ["stages.reconstruction.max_steps=0"],
        "stages.reconstruction.max_steps must be a positive number of optimizer steps, got 0",
    ),
    "schedule_within_its_warm_up": (
        ["stages.reconstruction.scheduler.warmup_steps=300", "stages.reconstruction.scheduler.schedule_steps=100"],
        "stages.reconstruction.optimizer / scheduler: scheduler.warmup_steps=300 >= scheduler.schedule_steps=100: "
        "the learning rate would be 0 from step 300 on; make the schedule longer than its warm-up",
    ),
    "null_learning_rate": (  # was torch's "'<=' not supported between instances of 'float' and 'NoneType'"
        ["stages.reconstruction.optimizer.lr=null"],
        "stages.reconstruction.optimizer.lr=None: must be a number (the peak learning rate)",
    ),
    "null_seed": (  # failed inside the sampler, mid-stage
        ["seed=null"],
        "seed=None: must be a whole number (it seeds data order, init and dropout)",
    ),
    "mteb_probe_without_schedule": (
        ["probe.mteb_data_root=/data"],
        "probe.mteb_data_root='/data' and probe.mteb_every_n_steps=0: set both to run the in-training mteb probe, "
        "or neither",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_contradictory_or_unknown_settings_are_rejected(case: str) -> None:
    overrides, expected = BAD_CONFIGS[case]
    assert _reject(overrides) == expected


@pytest.mark.parametrize(
    "overrides",
    [
        ["pipeline=bireco", "+stages.reconstruction.init_from=base", "+stages.contrastive.init_from=reconstruction"],
        ["pipeline=baseline", "+stages.contrastive.init_from=base"],
        ["peft@stages.reconstruction.peft=lora"],  # LoRA in Stage I: a choice, not a contradiction
        ["peft@stages.contrastive.peft=none"],  # full fine-tuning in Stage II
        ["stages.reconstruction.loss.alpha=0", "stages.contrastive.batch_size=1"],
        ["probe.mteb_data_root=/data", "probe.mteb_every_n_steps=5", "data.on_bad_row=skip"],
    ],
)
def test_consistent_settings_pass(overrides: list[str]) -> None:
    validate_config(compose_cfg(overrides))


def test_a_lora_key_on_a_full_finetuning_stage_needs_the_plus_and_is_then_rejected() -> None:
    """Without `+` Hydra itself refuses the key (the `none` group has no LoRA keys); with it, validation does."""
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'stages\.reconstruction\.peft\.r'"):
        compose_cfg(["stages.reconstruction.peft.r=8"])
    assert _reject(["+stages.reconstruction.peft.dropout=0.1"]).startswith(
        "stages.reconstruction.peft: LoRA setting(s) dropout=0.1 on a stage configured for full fine-tuning"
    )


@pytest.mark.parametrize("data", ["synthetic", "local", "echo_e5"])
def test_bad_rows_stop_the_run_by_default(data: str) -> None:
    assert compose_cfg(
        [f"data={data}", "data.path=/x"] if data != "synthetic" else [], fast=False
    ).data.on_bad_row == ("error")


def test_validation_runs_before_any_model_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad config with a model that does not exist: the ConfigError wins, and nothing is written."""
    import bireco.factory
    import bireco.pipeline

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was validated")

    monkeypatch.setattr(bireco.factory, "load_backbone", no_loading)
    monkeypatch.setattr(bireco.pipeline, "prepare_data", no_loading)
    cfg = compose_cfg(
        # a hub name nobody has (a missing *folder* is itself refused by the validation: tests/models/test_settings.py)
        ["model=llama3.2-1b", "model.pretrained=no-such-org/no-such-model", "stages.reconstruction.loss.alpha=2"]
    )
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^stages.reconstruction.loss.alpha must be a number in \[0, 1\], got 2$"):
        bireco.pipeline.run_pipeline(cfg, run_dir)
    assert not run_dir.exists()


PAPER_MODELS = ["llama3.2-1b", "qwen2.5-1.5b", "llama3.2-3b", "mistral-7b", "llama3.1-8b"]


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_each_presets_candidate_pool_is_the_global_batch_its_comment_states(model: str) -> None:
    """The header comment says "Stage II: 1024 = ..." (and "Stage I: 512 = ..."); the layout must give exactly that."""
    import re

    from bireco.stage_settings import candidate_pool

    text = (Path(CONF_DIR) / "model" / f"{model}.yaml").read_text()
    stated = {s: int(n) for s, n in re.findall(r"Stage (I|II): (\d+) =", text)}
    cfg = compose_cfg([f"model={model}", "trainer=ddp"], fast=False)
    world = cfg.model.resources.nodes * cfg.model.resources.gpus_per_node
    pool, global_batch = candidate_pool(cfg.stages.contrastive, world)
    assert pool == global_batch == stated["II"] == 1024
    rec = cfg.stages.reconstruction
    assert rec.batch_size * rec.accumulate_grad_batches * world == stated["I"]


def test_accumulation_in_stage2_is_refused_unless_the_smaller_pool_is_asked_for() -> None:
    from bireco.config import ConfigError, validate_config
    from bireco.stage_settings import check_candidate_pool

    over = ["trainer.devices=2", "stages.contrastive.accumulate_grad_batches=4", "stages.contrastive.batch_size=8"]
    with pytest.raises(ConfigError, match=r"scored against 16 rows of a global batch of 64.*pool=global_batch"):
        validate_config(compose_cfg(over))
    accepted = compose_cfg([*over, "stages.contrastive.pool=micro_batch"])
    validate_config(accepted)
    # what the stage builder logs, with the trainer's world size
    note = check_candidate_pool(accepted.stages.contrastive, 2, "contrastive")
    assert note == (
        "stages.contrastive.pool=micro_batch: with accumulate_grad_batches=4 each query is scored against "
        "16 rows of a global batch of 64"
    )
    assert check_candidate_pool(compose_cfg([]).stages.contrastive, 2, "contrastive") is None


def test_the_pool_messages_name_the_stage_they_are_about() -> None:
    from omegaconf import OmegaConf

    from bireco.errors import ConfigError
    from bireco.stage_settings import check_candidate_pool

    stage = OmegaConf.create({"pool": "everything", "accumulate_grad_batches": 1, "batch_size": 8, "loss": {}})
    with pytest.raises(ConfigError, match=r"^stages\.nli_stage\.pool='everything': choose one of"):
        check_candidate_pool(stage, 1, "nli_stage")
    stage.pool, stage.accumulate_grad_batches = "global_batch", 2
    refused = r"^stages\.nli_stage: with accumulate_grad_batches=2 .*stages\.nli_stage\.pool="
    with pytest.raises(ConfigError, match=refused):
        check_candidate_pool(stage, 1, "nli_stage")


@pytest.mark.parametrize("model", ["mistral-7b", "llama3.1-8b"])
def test_7b_8b_stage1_is_sharded_when_distributed_and_stage2_stays_replicated(model: str) -> None:
    from bireco.stage_settings import stage_strategy

    cfg = compose_cfg([f"model={model}", "trainer=ddp"], fast=False)
    assert stage_strategy(cfg, "reconstruction")["name"] == "fsdp"
    assert stage_strategy(cfg, "contrastive") == "ddp"  # GradCache needs whole parameters
    single = compose_cfg([f"model={model}", "trainer=gpu"], fast=False)
    assert stage_strategy(single, "reconstruction") == "auto"  # nothing to shard on one device


@pytest.mark.parametrize(
    ("value", "key"), [("token_ids", "token_ids"), ("text", "text"), ("true", "token_ids"), ("false", None)]
)
def test_mask_duplicates_names_the_row_key(value: str, key: str | None) -> None:
    cfg = compose_cfg([f"stages.contrastive.loss.mask_duplicates={value}"])
    validate_config(cfg)
    assert build_objective("contrastive", cfg.stages.contrastive).duplicate_key == key


def test_mask_duplicates_is_on_by_default_and_checked() -> None:
    assert build_objective("contrastive", compose_cfg([]).stages.contrastive).duplicate_key == "token_ids"
    with pytest.raises(ConfigError, match=r"^stages.contrastive.loss.mask_duplicates='embeddings': choose one of"):
        validate_config(compose_cfg(["stages.contrastive.loss.mask_duplicates=embeddings"]))


def test_matryoshka_dims_and_weights_are_checked() -> None:
    cfg = compose_cfg(
        ["stages.contrastive.loss.matryoshka_dims=[16,64]", "stages.contrastive.loss.matryoshka_weights=[1,0.5]"]
    )
    validate_config(cfg)
    assert build_objective("contrastive", cfg.stages.contrastive).matryoshka == [(16, 1.0), (64, 0.5)]
    assert (
        build_objective("contrastive", compose_cfg([]).stages.contrastive).matryoshka is None
    )  # the paper: the full embedding only
    bad = {
        "stages.contrastive.loss.matryoshka_dims=[64,16]": "strictly ascending",
        "stages.contrastive.loss.matryoshka_dims=[]": "non-empty",
        "stages.contrastive.loss.matryoshka_weights=[1]": "matryoshka_dims is null",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            validate_config(compose_cfg([override]))
    with pytest.raises(ConfigError, match="one positive number per dimension"):
        validate_config(
            compose_cfg(
                ["stages.contrastive.loss.matryoshka_dims=[16,64]", "stages.contrastive.loss.matryoshka_weights=[1]"]
            )
        )


def test_model_presets_set_their_stage_settings_directly() -> None:
    """One home per knob: the stage file holds the default, the model preset overrides it under `stages.`."""
    tiny, paper = compose_cfg(["model=tiny"], fast=False), compose_cfg(["model=llama3.2-1b"], fast=False)
    assert "train" not in tiny.model and "train" not in paper.model
    assert (tiny.stages.reconstruction.max_steps, tiny.stages.reconstruction.optimizer.lr) == (400, 2e-3)
    assert (paper.stages.reconstruction.max_steps, paper.stages.reconstruction.optimizer.lr) == (2000, 4e-5)
    stage_files = (Path(CONF_DIR) / "stage").glob("*.yaml")
    assert not [f.name for f in stage_files if "model." in f.read_text()]  # no stage setting read from the model


def test_a_stage_setting_no_preset_sets_is_named() -> None:
    cfg = compose_cfg(["stages.contrastive.batch_size=???"])
    with pytest.raises(ConfigError, match=r"^stages.contrastive: batch_size not set \(\?\?\?\); the model preset"):
        validate_config(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+stages.contrastive.batchsize=3", r"^stages.contrastive: unknown setting\(s\) \['batchsize'\]; a stage's"),
        ("stages.contrastive.val_check_interval=0", r"^stages.contrastive.val_check_interval must be a positive"),
        ("stages.reconstruction.probe=3", r"^stages.reconstruction.probe must be true or false, got 3$"),
        (
            "~stages.reconstruction.with_negatives",
            r"^stages.reconstruction: missing setting\(s\) \['with_negatives'\]$",
        ),
    ],
)
def test_a_stage_s_loop_settings_go_through_their_schema(override: str, message: str) -> None:
    """Every key of a stage but its objects is a field of `StageLoop`: a typo added with `+` is refused, not
    ignored, and each value has one check."""
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg([override]))


@pytest.mark.parametrize("value", ["[contrastive,nope]", "contrastive", "[3]"])
def test_the_reconstruction_score_names_known_stages(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^probe.reconstruction.stages=.*: a list of stage names \(.*contrastive"):
        validate_config(compose_cfg([f"probe.reconstruction.stages={value}"]))
    validate_config(compose_cfg(["probe.reconstruction.stages=[warmup,reconstruction]"]))


def test_validating_a_config_imports_neither_transformers_nor_lightning() -> None:
    """A config error is one line in ~2 s: validation runs before the ~5 s of transformers / Lightning imports."""
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from bireco.conf import CONF_DIR\n"
        "from bireco.config import validate_config\n"
        "from bireco.utils.resolvers import register\n"
        "register()\n"
        "with initialize_config_dir(config_dir=CONF_DIR, version_base='1.3'):\n"
        "    validate_config(compose('train', overrides=['experiment=demo', 'pipeline=bireco']))\n"
        "heavy = ('transformers', 'lightning', 'lightning_fabric', 'pytorch_lightning', 'torchmetrics',\n"
        "         'peft', 'mteb', 'tokenizers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
