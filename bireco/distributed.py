"""Cross-rank pieces: gather with gradients, the rank's offset, strategy construction, checkpoint consolidation.

Why gather *with gradients*: Stage II scores every query against the whole global batch's positives and
negatives (the paper). A plain `dist.all_gather` returns tensors cut off from autograd, so the other ranks'
candidates would act as constants and the loss's gradient would be wrong. `torch.distributed.nn`'s all_gather
backpropagates by summing each candidate's gradient over all ranks' losses and returning it to the rank that
produced it; DDP then averages over ranks, so the update is exactly that of one process over the global batch
(proven in tests/distributed/).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bireco.console import exit_on_user_error, fail
from bireco.errors import UserError

log = logging.getLogger(__name__)


def release_process_group() -> None:
    """Destroy the default process group once a job is done with it. Left to interpreter exit, its
    communication threads can be torn down mid-flight, which aborts the process (seen as a rare
    `terminate called without an active exception` on a rank that had finished)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """(world size, rank); (1, 0) outside an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def is_global_zero() -> bool:
    """Rank 0 of the job: from the process group once it exists, else from the launcher's environment
    (RANK / LOCAL_RANK / SLURM_PROCID, as Lightning reads it), so files are written once per job, not per rank."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    n, rank = world()
    return rank == 0 if n > 1 else getattr(rank_zero_only, "rank", 0) == 0


def launched_as_many_processes() -> bool:
    """True when torchrun, SLURM or Lightning's launcher started this job as several processes."""
    return any(int(os.environ.get(v) or 1) > 1 for v in ("WORLD_SIZE", "SLURM_NTASKS")) or world()[0] > 1


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` in rank order (`[obj]` in one process)."""
    n, _ = world()
    if n == 1:
        return [obj]
    out: list[Any] = [None] * n
    dist.all_gather_object(out, obj)
    return out


def full_state_dict(trainer: Any) -> dict[str, torch.Tensor]:
    """The LightningModule's whole weights, complete on rank 0. A collective under FSDP: every rank calls it.

    Under FSDP each rank holds a shard, and a rank-0-only `save_pretrained` would write (or wait for) shards;
    torch's `get_model_state_dict` gathers them, whatever `state_dict_type` the checkpoints use: on GPUs into
    rank 0's CPU memory only (torch's offload path; it needs CUDA), on CPU (tests, gloo) onto every rank.
    Other strategies hold whole parameters (Lightning's own state dict).
    """
    from lightning.pytorch.strategies import FSDPStrategy

    strategy = trainer.strategy
    if isinstance(strategy, FSDPStrategy):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        on_gpu = strategy.root_device.type == "cuda"  # (parameters may sit on the CPU under FSDP's CPU offload)
        sd = get_model_state_dict(strategy.model, options=StateDictOptions(full_state_dict=True, cpu_offload=on_gpu))
    else:
        sd = strategy.lightning_module_state_dict()
    return {clean_param_name(k): v for k, v in sd.items()}


def all_sizes(sizes: list[int], device: torch.device) -> list[list[int]]:
    """Every rank's `sizes` (one collective for all of them): rank -> sizes."""
    n, _ = world()
    local = torch.tensor(sizes, dtype=torch.long, device=device)
    if n == 1:
        return [sizes]
    out = [torch.empty_like(local) for _ in range(n)]
    dist.all_gather(out, local)
    return [t.tolist() for t in out]


def gather_rows(x: torch.Tensor, rows_per_rank: list[int]) -> torch.Tensor:
    """Every rank's rows in rank order, without gradients (e.g. integer keys); ranks may hold different counts.

    Args:
        x: (rows_per_rank[rank], ...) this rank's rows.
        rows_per_rank: every rank's row count (from `all_sizes`).
    """
    n, _ = world()
    if n == 1:
        return x
    longest = max(rows_per_rank)
    if longest == 0:
        return x
    padded = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))]) if x.shape[0] < longest else x
    parts = [torch.empty_like(padded) for _ in range(n)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:k] for p, k in zip(parts, rows_per_rank, strict=True)], dim=0)


def gather_rows_with_grad(x: torch.Tensor, rows_per_rank: list[int]) -> torch.Tensor:
    """Concatenate every rank's rows in rank order, keeping the autograd graph to each rank's own rows.

    Ranks may hold different numbers of rows (e.g. rows without a hard negative contribute none); they are
    padded to the largest for the collective and trimmed after.

    Args:
        x: (rows_per_rank[rank], ...) this rank's rows.
        rows_per_rank: every rank's row count (from `all_sizes`).

    Returns:
        (sum(rows_per_rank), ...)
    """
    n, rank = world()
    if n == 1:
        return x
    if x.shape[0] != rows_per_rank[rank]:
        raise ValueError(f"rank {rank} has {x.shape[0]} rows, the size exchange said {rows_per_rank[rank]}")
    longest = max(rows_per_rank)
    if longest == 0:
        return x
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))], dim=0)
    from torch.distributed.nn.functional import all_gather

    # the function Lightning's `all_gather(sync_grads=True)` uses; torch 2.13 flags it for a private successor
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated", FutureWarning)
        parts = all_gather(x)  # tuple of (longest, ...) per rank; backward sums gradients over ranks
    return torch.cat([p[:k] for p, k in zip(parts, rows_per_rank, strict=True)], dim=0)


# ---------------------------------------------------------------------------------------------------------------
# strategies


def deepspeed_available() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def require_deepspeed(where: str) -> None:
    if not deepspeed_available():
        raise ImportError(
            f"{where} uses DeepSpeed, which is not installed (it is not a bireco dependency: it needs a CUDA "
            "toolchain). Install it on the cluster (`pip install deepspeed`) or use trainer=fsdp / trainer=ddp."
        )


def _layer_classes(model: nn.Module) -> set[type[nn.Module]]:
    """The model's transformer block classes, from transformers' own `_no_split_modules` (what accelerate wraps)."""
    names = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(
            f"FSDP auto-wrap: {type(model).__name__} declares no `_no_split_modules`; "
            "set trainer.strategy.auto_wrap_policy to the block class names"
        )
    return classes


def build_strategy(spec: Any, model: nn.Module) -> Any:
    """`trainer.strategy` -> what `L.Trainer(strategy=...)` takes.

    A string (`auto`, `ddp`, ...) passes through. A mapping `{name: fsdp|deepspeed, ...}` builds Lightning's
    strategy object: FSDP wraps each transformer block (`_no_split_modules`, so no per-model class names in
    config) with `use_orig_params` (needed with LoRA's frozen base); DeepSpeed takes the remaining keys
    (`stage`, `offload_optimizer`, ...) and fails clearly when the package is missing.
    """
    if spec is None or isinstance(spec, str):
        return spec
    kwargs = dict(spec)
    name = kwargs.pop("name")
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        wrap = kwargs.pop("auto_wrap_policy", None)
        classes = (
            {type(m) for m in model.modules() if type(m).__name__ in set(wrap)} if wrap else _layer_classes(model)
        )
        kwargs.setdefault("use_orig_params", True)
        return FSDPStrategy(auto_wrap_policy=classes, **kwargs)
    if name == "deepspeed":
        require_deepspeed(f"trainer.strategy (DeepSpeed ZeRO-{kwargs.get('stage')})")
        from lightning.pytorch.strategies import DeepSpeedStrategy

        return DeepSpeedStrategy(**kwargs)
    raise ValueError(f"trainer.strategy.name: unknown '{name}'; choose fsdp or deepspeed (or a Lightning name string)")


FSDP_NAME_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def clean_param_name(name: str) -> str:
    """A parameter's name as state dicts spell it: FSDP (and activation-checkpoint) wrappers insert
    `_fsdp_wrapped_module.` into `named_parameters()` names but not into (full or sharded) state-dict keys."""
    for part in FSDP_NAME_PARTS:
        name = name.replace(part, "")
    return name


def strategy_name(spec: Any) -> str:
    """`ddp`, `fsdp`, `deepspeed`, `auto`, ... for a string or mapping `trainer.strategy`."""
    if spec is None:
        return "auto"
    if isinstance(spec, str):
        return spec
    return str(spec["name"])


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


class NotConsolidable(UserError, ValueError):
    """What `consolidate` was given is not a sharded checkpoint it can read, or where it writes is not a file."""


def _deepspeed_model_states(folder: Path) -> list[Path]:
    """DeepSpeed's per-rank model files in a checkpoint's tag folders (`mp_rank_00_model_states.pt` under ZeRO
    1/2, `zero_pp_rank_0_mp_rank_00_model_states.pt` under ZeRO-3; Lightning's tag folder is `checkpoint/`)."""
    return sorted(folder.glob("*/*model_states.pt"))


def _checkpoint_kind(checkpoint: Path) -> str:
    """`fsdp` or `deepspeed`, from the folder's contents, before any converter reads it (they fail with a
    library traceback on anything else); a `NotConsolidable` naming the path otherwise."""
    if not checkpoint.exists():
        raise NotConsolidable(f"{checkpoint}: no such checkpoint")
    if not checkpoint.is_dir():
        raise NotConsolidable(
            f"{checkpoint}: already a single file, which needs no consolidation "
            "(only a sharded checkpoint folder, as FSDP or DeepSpeed write it, is consolidated)"
        )
    if (checkpoint / ".metadata").is_file():  # torch.distributed.checkpoint's index of the *.distcp shards
        return "fsdp"
    if _deepspeed_model_states(checkpoint):
        latest = checkpoint / "latest"
        if not latest.is_file():
            raise NotConsolidable(
                f"{checkpoint}: a DeepSpeed checkpoint without its `latest` file "
                "(which names the tag folder to read, e.g. checkpoint)"
            )
        tag = latest.read_text().strip()
        if not tag or not list((checkpoint / tag).glob("*model_states.pt")):
            raise NotConsolidable(f"{latest}: names tag folder '{tag}', which holds no *model_states.pt")
        if not deepspeed_available():
            raise NotConsolidable(
                f"{checkpoint}: a DeepSpeed checkpoint, and DeepSpeed is not installed (it is not a bireco "
                "dependency: it needs a CUDA toolchain); `pip install deepspeed` to consolidate it"
            )
        return "deepspeed"
    raise NotConsolidable(
        f"{checkpoint}: neither an FSDP nor a DeepSpeed sharded checkpoint folder (expected FSDP's .metadata with "
        "its *.distcp shards, or DeepSpeed's `latest` file and the tag folder it names, holding *model_states.pt)"
    )


# what torch's and DeepSpeed's readers raise on damaged or truncated files (a zip without its directory, a pickle
# cut short, a missing shard); anything else (an AttributeError of a library version) is a bug and keeps its traceback
UNREADABLE = (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, AssertionError)


@contextlib.contextmanager
def _quiet_checkpoint_reader() -> Iterator[None]:
    """torch's checkpoint reader logs each failed metadata read with its traceback on the root logger before it
    raises; the one line of `NotConsolidable` says why instead. Every record of torch.distributed.checkpoint is
    held back while it reads (its warnings too)."""

    def keep(record: logging.LogRecord) -> bool:
        return "distributed/checkpoint" not in record.pathname.replace("\\", "/")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _rank_failure(e: BaseException) -> BaseException:
    """The first rank's own exception inside torch's CheckpointException (`e` itself otherwise)."""
    failures = getattr(e, "failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        return first[0] if isinstance(first, tuple) else first
    return e


def _first_line(e: BaseException) -> str:
    """`Type: first line` of an exception; for torch's CheckpointException, of the first rank's own failure."""
    e = _rank_failure(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def consolidate(checkpoint: str | Path, out_file: str | Path) -> Path:
    """A sharded checkpoint (FSDP `state_dict_type: sharded` folder, or a DeepSpeed ZeRO folder) -> one ordinary
    Lightning `.ckpt` file, as a single-device run writes it (resumable with `ckpt_path=`, readable anywhere).

    Uses the libraries' own converters: Lightning's `consolidate_checkpoint` for FSDP and DeepSpeed's
    `zero_to_fp32` (through Lightning) for ZeRO. Run it on one machine, without a process group. What is not such
    a folder (a missing path, a single file, any other folder, told apart by its contents before a converter reads
    it, or damaged so that the converter cannot read it), or an `out_file` that is a folder, raises
    `NotConsolidable` (a `UserError`) naming the path; `out_file` is written to a temporary file renamed into
    place, so it appears whole or not at all.
    """
    checkpoint, out_file = Path(checkpoint), Path(out_file)
    kind = _checkpoint_kind(checkpoint)
    if out_file.is_dir():
        raise NotConsolidable(f"{out_file}: is a folder; OUT is the .ckpt file to write")
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NotConsolidable(f"{out_file.parent}: cannot create the output's folder ({e.strerror})") from e
    tmp = out_file.with_name(out_file.name + ".tmp")
    try:
        if kind == "deepspeed":
            from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

            try:
                convert_zero_checkpoint_to_fp32_state_dict(str(checkpoint), str(tmp))
            except UNREADABLE as e:  # DeepSpeed's reader on damaged files
                raise NotConsolidable(
                    f"{checkpoint}: the DeepSpeed checkpoint cannot be read ({_first_line(e)})"
                ) from e
        else:
            # what `python -m lightning.pytorch.utilities.consolidate_checkpoint` does, written atomically
            from lightning.fabric.utilities.load import _load_distributed_checkpoint
            from lightning.pytorch.utilities.consolidate_checkpoint import _format_checkpoint
            from torch.distributed.checkpoint.api import CheckpointException

            try:
                with _quiet_checkpoint_reader():
                    loaded = _load_distributed_checkpoint(checkpoint)
            except (CheckpointException, *UNREADABLE) as e:  # CheckpointException: a BaseException around a rank's
                if isinstance(e, CheckpointException) and not isinstance(_rank_failure(e), UNREADABLE):
                    raise
                raise NotConsolidable(f"{checkpoint}: the sharded checkpoint cannot be read ({_first_line(e)})") from e
            if "model" not in loaded:
                raise NotConsolidable(
                    f"{checkpoint}: a torch distributed checkpoint without a `model` entry (not one Lightning wrote)"
                )
            torch.save(_format_checkpoint(loaded), tmp)
        tmp.replace(out_file)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("consolidated %s -> %s", checkpoint, out_file)
    return out_file


PROGRAM = "bireco-consolidate"
MODULE_PROGRAM = "python -m bireco.distributed"
DESCRIPTION = (
    "A sharded checkpoint folder (FSDP state_dict_type=sharded, or DeepSpeed ZeRO) -> one ordinary Lightning .ckpt "
    "file, as a single-device run writes it."
)


def main(argv: list[str] | None = None, prog: str = PROGRAM) -> None:
    """`bireco-consolidate CHECKPOINT OUT`: `bireco.cli.consolidate` passes `["consolidate", *argv]`; the command is
    this module's only one and appears nowhere in the usage. `python -m bireco.distributed consolidate CHECKPOINT
    OUT` is the same, under that name. A user error ends in one line `PROG: error: ...` (exit status 2)."""
    import argparse

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["consolidate"]:
        fail(prog, f"the command comes first: {prog} consolidate CHECKPOINT OUT")
    if prog == MODULE_PROGRAM:
        prog = f"{MODULE_PROGRAM} consolidate"
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="sharded checkpoint folder (FSDP state_dict_type=sharded, or DeepSpeed)",
    )
    parser.add_argument("out", metavar="OUT", help="the single .ckpt file to write")
    args = parser.parse_args(argv[1:])
    logging.basicConfig(level=logging.INFO)
    try:
        consolidate(args.checkpoint, args.out)
    except Exception as e:
        exit_on_user_error(e, prog)
        raise


if __name__ == "__main__":
    main(prog=MODULE_PROGRAM)
