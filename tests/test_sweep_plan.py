"""`bireco-sweep-plan`: the jobs `bireco-train -m` would run — the config's sweep axes and the command line's —
with their run folders, and a bad override or setting as one line."""

from __future__ import annotations

import pytest

from bireco.sweep_plan import main, plan


@pytest.fixture(autouse=True)
def _resolvers() -> None:
    from bireco.utils.resolvers import register

    register()


def test_command_line_sweeps_are_axes_and_win_over_the_configs() -> None:
    """reproduce_tiny sweeps 6 pipelines x 2 seeds in its config; `pipeline=bireco,baseline` replaces that axis
    (was: Hydra's "Ambiguous value" error, a traceback)."""
    assert len(plan(["experiment=reproduce_tiny"])) == 12
    jobs = plan(["experiment=reproduce_tiny", "pipeline=bireco,baseline", "seed=1,2,3"])
    assert [(j["pipeline"], j["dir"].rsplit("/", 2)[-2:]) for j in jobs][:4] == [
        ("bireco", ["bireco", "seed-1"]),
        ("bireco", ["bireco", "seed-2"]),
        ("bireco", ["bireco", "seed-3"]),
        ("baseline", ["baseline", "seed-1"]),
    ]
    assert len(jobs) == 6 and len({j["dir"] for j in jobs}) == 6


@pytest.mark.parametrize(
    "args",
    [
        ["experiment=reproduce_tiny", "pipeline=bireco", "seed=1"],  # was 12 jobs planned, 1 launched
        ["experiment=reproduce_tiny", "pipeline=bireco"],
        ["experiment=reproduce_tiny", "seed=3", "pipeline=bireco,baseline"],
    ],
)
def test_a_plain_command_line_value_replaces_the_configs_axis_as_hydra_does(args: list[str]) -> None:
    """The jobs equal what Hydra's basic sweeper forms from the config's axes followed by the command line."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes = ["pipeline=baseline,bireco,only_q2d,only_d2q,baseline_budget,anchor_control", "seed=1,2"]  # the config's
    hydra_jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(axes + args), None)[0]
    jobs = plan(args)
    assert len(jobs) == len(hydra_jobs)
    expected = sorted(
        "/".join(o.partition("=")[2] for o in job if o.startswith(("pipeline=", "seed="))) for job in hydra_jobs
    )
    assert sorted(f"{j['pipeline']}/{j['dir'].rsplit('seed-', 1)[1]}" for j in jobs) == expected


def test_the_default_run_folder_resolves_as_under_a_real_sweep() -> None:
    """The default subdir interpolates hydra:job.override_dirname (was: "HydraConfig was not set", a traceback)."""
    assert [j["dir"] for j in plan(["pipeline=baseline", "seed=1,2"])] == [
        "runs/multirun/pipeline=baseline,seed=1",
        "runs/multirun/pipeline=baseline,seed=2",
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["experiment=nope"],
            "In 'train': Could not find 'experiment/nope'; Available options in 'experiment': demo, ",
        ),
        (["nokey=1"], "Could not override 'nokey'. To append to your config use +nokey=1"),
        (["stages.contrastive.max_steps=-1"], "stages.contrastive.max_steps must be a positive number"),
        (["seed=1,abc"], "seed=abc: must be a whole number (default 42)"),
        (["experiment=paper_table"], "data.path= required (the config has no default)"),
    ],
    ids=["unknown-option", "unknown-key", "invalid-setting", "wrong-type", "required-unset"],
)
def test_a_bad_override_is_one_line(capsys: pytest.CaptureFixture, args: list[str], line: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"bireco-sweep-plan: error: {line}")


def test_a_stage_s_own_strategy_and_grad_cache_are_shown() -> None:
    """7B: Stage I is sharded (FSDP) and Stage II uses GradCache chunks; the dry run printed neither."""
    jobs = plan(["experiment=paper_table", "data.path=/x", "pipeline=bireco"], models=["mistral-7b"])
    [job] = jobs
    assert job["reconstruction"]["strategy"]["name"] == "fsdp" and "grad_cache" not in job["reconstruction"]
    assert job["contrastive"]["strategy"] == "ddp" and job["contrastive"]["grad_cache"] == {"chunk_size": 32}
    [tiny] = plan(["pipeline=bireco", "seed=1"])
    assert "strategy" not in tiny["reconstruction"] and "grad_cache" not in tiny["contrastive"]
