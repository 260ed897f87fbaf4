"""What a stage's config means, as the rest of bireco reads it: its strategy, its step count (budgets), its
candidate pool, and its loss and optimizer built — and thereby checked — from the config. Nothing here loads a
model; `bireco.config.validate_config` calls these before anything else runs."""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from bireco.errors import ConfigError
from bireco.utils.checks import is_number, positive_int

if TYPE_CHECKING:
    from bireco.losses.objective import Objective


SINGLE_DEVICE = ("auto", "single_device")


def stage_strategy(cfg: DictConfig, name: str) -> Any:
    """The strategy a stage runs under: its own `stages.<name>.strategy` replaces a distributed
    `trainer.strategy` (ddp, fsdp, ...); single-device trainers (`trainer=cpu|gpu`) run every stage as they are.

    Why per stage: full fine-tuning (Stage I) of a 7–8B model keeps fp32 master weights + AdamW state, 16 bytes
    per parameter, so it must be sharded (FSDP), while its LoRA Stage II fits replicated (DDP) and needs whole
    parameters for GradCache.
    """
    from bireco.distributed import strategy_name

    spec = cfg.trainer.get("strategy")
    own = cfg.stages[name].get("strategy")
    if own is not None and strategy_name(spec) not in SINGLE_DEVICE:
        spec = own
    return OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec


def stage_max_steps(cfg: DictConfig, name: str) -> int:
    """Optimizer steps of a stage: its `max_steps`, or with `budget_of: [stages...]` the sum of theirs (the
    paper's same-budget control: Stage II alone for as many steps as Stage I + Stage II)."""
    st = cfg.stages[name]
    of = st.get("budget_of")
    if not of:
        return int(st.max_steps)
    unknown = [s for s in of if s not in cfg.stages]
    if unknown:
        raise ConfigError(f"stages.{name}.budget_of={list(of)}: no stage config for {unknown}")
    return sum(int(cfg.stages[s].max_steps) for s in of)


def build_objective(name: str, stage: DictConfig) -> Objective:
    """`stages.<name>.loss` instantiated — its constructor is each of its settings' one check — and wrapped in
    GradCache when `stages.<name>.grad_cache` sets a chunk size or token budget. Cheap: no model is loaded."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from bireco.losses.grad_cache import EmbeddingLoss, GradCache

    spec = stage.get("loss")
    if not isinstance(spec, DictConfig) or "_target_" not in spec:
        raise ConfigError(f"stages.{name}.loss must name a loss class (_target_: ...), got {spec!r}")
    try:
        loss = instantiate(spec)
    except InstantiationException as e:
        raise ConfigError(_field_message(f"stages.{name}.loss", spec, e.__cause__ or e)) from e
    gc = stage.get("grad_cache") or {}
    chunk, budget = gc.get("chunk_size"), gc.get("max_tokens")
    if chunk is None and budget is None:
        return loss
    if not isinstance(loss, EmbeddingLoss):
        raise ConfigError(
            f"stages.{name}.grad_cache: {type(loss).__name__} is not a loss of embeddings, so GradCache cannot "
            "split it; set grad_cache.chunk_size and max_tokens to null"
        )
    try:
        return GradCache(loss, chunk_size=chunk, max_tokens=budget)
    except ValueError as e:
        raise ConfigError(f"stages.{name}.{e}") from e


def _field_message(where: str, spec: DictConfig, cause: BaseException) -> str:
    """`where.field problem` when the constructor's message starts with one of its settings, else `where: ...`."""
    message = str(cause)
    field = re.match(r"\w+", message)
    return f"{where}.{message}" if field and field.group() in spec else f"{where}: {message}"


def check_optimizer(name: str, stage: DictConfig) -> None:
    """Build the stage's optimizer and schedule on a dummy parameter: the optimizer's own checks (lr, betas,
    unknown keys) run before any model is loaded."""
    import torch
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if not isinstance(stage.get("optimizer"), DictConfig):
        raise ConfigError(f"stages.{name}.optimizer must name an optimizer (_target_: ..., _partial_: true)")
    lr = stage.optimizer.get("lr")
    if "lr" in stage.optimizer and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
        # torch's own check reads "'<=' not supported between instances of 'float' and 'NoneType'"
        raise ConfigError(f"stages.{name}.optimizer.lr={lr}: must be a number (the peak learning rate)")
    try:
        opt = instantiate(stage.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        if stage.get("scheduler") is not None:
            instantiate(stage.scheduler)(opt, int(stage.max_steps))
    except InstantiationException as e:
        raise ConfigError(f"stages.{name}.optimizer / scheduler: {e.__cause__ or e}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"stages.{name}.optimizer / scheduler: {e}") from e


def candidate_pool(stage: DictConfig, world_size: int) -> tuple[int, int]:
    """(candidate pool, global batch) of a contrastive stage: how many rows' positives and negatives each query
    is scored against, and how many rows one optimizer step trains on.

    The pool is the per-device batch (all of it, also when GradCache embeds it in chunks) times the ranks it is
    gathered from. Gradient accumulation does not grow it: each micro-batch is its own softmax.
    """
    rows = int(stage.batch_size)
    pool = rows * (world_size if stage.loss.get("gather_across_ranks", True) else 1)
    return pool, rows * world_size * int(stage.accumulate_grad_batches)


POOLS = ("global_batch", "micro_batch")


def check_candidate_pool(stage: DictConfig, world_size: int | None, name: str) -> str | None:
    """`stages.<name>.pool` says which candidates a query is scored against, and the layout must give it.

    `global_batch` (default): every row of the optimizer step — so no gradient accumulation (use GradCache
    chunks) and gathering across ranks. `micro_batch`: accumulation (or no gather) is allowed, and the pool
    size it leaves is returned next to the global batch, for the stage builder to log once (validation, which
    runs more than once per job, only raises).

    Args:
        world_size: number of ranks, or None where it is known only at fit start (`trainer.devices=-1`).
        name: the stage's key under `stages`, for the messages.

    Returns:
        The smaller pool's description under `micro_batch`, else None.
    """
    key = f"stages.{name}"
    mode = stage.get("pool", "global_batch")
    if mode not in POOLS:
        raise ConfigError(f"{key}.pool={mode!r}: choose one of {list(POOLS)}")
    k, gather = int(stage.accumulate_grad_batches), stage.loss.get("gather_across_ranks", True)
    if k == 1 and (gather or world_size == 1):
        return None
    if world_size is None:
        sizes = f"{stage.batch_size} rows per rank (x ranks if gathered), of a global batch {k}x larger"
    else:
        pool, global_batch = candidate_pool(stage, world_size)
        sizes = f"{pool} rows of a global batch of {global_batch}"
    why = f"accumulate_grad_batches={k}" if k > 1 else "loss.gather_across_ranks=false"
    if mode == "global_batch":
        raise ConfigError(
            f"{key}: with {why} each query is scored against {sizes} (each micro-batch or rank is its own "
            f"softmax), but {key}.pool=global_batch; embed the whole per-device batch in GradCache chunks "
            f"(accumulate_grad_batches=1, grad_cache.chunk_size=N) to keep the pool, or set {key}.pool=micro_batch "
            "to accept the smaller pool"
        )
    return f"{key}.pool=micro_batch: with {why} each query is scored against {sizes}"


LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


def check_peft(name: str, peft: DictConfig | None) -> None:
    """`stages.<name>.peft`: full fine-tuning (`enabled: false`, no LoRA keys) or LoRA with its rank, scaling,
    dropout and target modules, each checked once."""
    where = f"stages.{name}.peft"
    if not isinstance(peft, DictConfig):
        raise ConfigError(
            f"{where} is not set: a stage says whether it fine-tunes every weight or LoRA adapters, "
            f"peft@{where}=none|lora (or peft: {{enabled: false}} in its file)"
        )
    enabled = peft.get("enabled")
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled must be true (LoRA) or false (full fine-tuning), got {enabled!r}")
    if not enabled:
        stray = {k: peft[k] for k in LORA_KEYS if peft.get(k) is not None}
        if stray:
            settings = ", ".join(f"{k}={v}" for k, v in stray.items())
            raise ConfigError(
                f"{where}: LoRA setting(s) {settings} on a stage configured for full fine-tuning "
                f"({where}.enabled=false); choose peft@{where}=lora for LoRA, or peft@{where}=none (no LoRA keys) "
                "for full fine-tuning"
            )
        return
    if not peft.get("target_modules"):
        raise ConfigError(f"{where}: LoRA needs target_modules (model.lora_target_modules)")
    if not positive_int(peft.get("r")):
        raise ConfigError(f"{where}.r (LoRA rank) must be a positive integer, got {peft.get('r')!r}")
    if not is_number(peft.get("alpha")) or peft.alpha <= 0:
        raise ConfigError(f"{where}.alpha (LoRA scaling) must be a positive number, got {peft.get('alpha')!r}")
    if not is_number(peft.get("dropout")) or not 0.0 <= peft.dropout < 1.0:
        raise ConfigError(f"{where}.dropout must be a number in [0, 1), got {peft.get('dropout')!r}")


@dataclass(frozen=True, kw_only=True)
class AnchorGainSettings:
    """`stages.<name>.anchor_gain` (Stage I): measure the anchor gain on every `every_n_steps`-th training batch;
    with `stop_at` (nats/token), end the stage once the mean of the last `window` measurements reaches it."""

    every_n_steps: int
    stop_at: float | None = None
    window: int = 4

    def __post_init__(self) -> None:
        for key in ("every_n_steps", "window"):
            if not positive_int(getattr(self, key)):
                raise ValueError(f"anchor_gain.{key} must be a positive integer, got {getattr(self, key)!r}")
        if self.stop_at is not None and not is_number(self.stop_at):
            raise ValueError(f"anchor_gain.stop_at must be a number (nats/token) or null, got {self.stop_at!r}")


# the keys of a stage config that become objects (or LoRA / GradCache settings) rather than loop settings
OBJECT_KEYS = ("loss", "optimizer", "scheduler", "peft", "grad_cache")


@dataclass(frozen=True, kw_only=True)
class StageLoop:
    """The schema of a stage's loop settings — every key of `stages.<name>` but its objects (`OBJECT_KEYS`);
    building one from the config is their one check, and an unknown key (a `+stages.x.batchsize=...` typo)
    is refused instead of ignored.

    Attributes:
        batch_size / accumulate_grad_batches: per device; the optimizer step is their product x ranks.
        max_steps: optimizer steps (or `budget_of`: the sum of those stages' max_steps).
        val_check_interval / checkpoint_every_n_steps: in optimizer steps.
        with_negatives: collate the rows' hard negatives; probe: run the training probes.
        strategy: this stage's own Lightning strategy (None = `trainer.strategy`).
        init_from: the stage it must start from (checked against the pipeline's order).
        budget_of: stages whose steps this one spends (`pipeline=baseline_budget`).
        pool: which candidates a contrastive query is scored against (`bireco.stage_settings.check_candidate_pool`).
        anchor_gain: Stage I's `AnchorGainSettings` (`train/anchor_gain`, the optional stop); None = not measured.
    """

    batch_size: int
    accumulate_grad_batches: int
    max_steps: int
    val_check_interval: int | float
    checkpoint_every_n_steps: int
    with_negatives: bool
    probe: bool
    strategy: Any = None
    init_from: str | None = None
    budget_of: list[str] | None = None
    pool: str | None = None
    anchor_gain: AnchorGainSettings | None = None

    def __post_init__(self) -> None:
        if self.anchor_gain is not None and not isinstance(self.anchor_gain, AnchorGainSettings):
            if not isinstance(self.anchor_gain, dict):
                raise ValueError(
                    f"anchor_gain must be a mapping (every_n_steps, stop_at, window) or null, got {self.anchor_gain!r}"
                )
            try:
                object.__setattr__(self, "anchor_gain", AnchorGainSettings(**self.anchor_gain))
            except TypeError as e:
                raise ValueError(f"anchor_gain: {e} (its settings: every_n_steps, stop_at, window)") from e
        if self.anchor_gain is not None and isinstance(self.batch_size, int) and self.batch_size < 2:
            # each row is decoded from another row's embedding: a batch of one has none
            raise ValueError(f"anchor_gain needs batch_size >= 2 (another row's embedding), got {self.batch_size}")
        if not positive_int(self.max_steps):
            raise ValueError(f"max_steps must be a positive number of optimizer steps, got {self.max_steps!r}")
        for key in ("batch_size", "accumulate_grad_batches", "checkpoint_every_n_steps"):
            if not positive_int(getattr(self, key)):
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        interval = self.val_check_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"val_check_interval must be a positive number of steps, got {interval!r}")
        for key in ("with_negatives", "probe"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be true or false, got {getattr(self, key)!r}")


def check_stage_loop(name: str, stage: DictConfig) -> StageLoop:
    """`stages.<name>`'s loop settings through their schema; a missing (`???`), unknown or bad one is a
    ConfigError naming `stages.<name>.<key>`."""
    missing = [k for k in stage if OmegaConf.is_missing(stage, k)]
    if missing:
        raise ConfigError(
            f"stages.{name}: {', '.join(missing)} not set (???); the model preset sets them per model size "
            f"(stages.{name}.<key>: in conf/model/<preset>.yaml), or set stages.{name}.{missing[0]}=..."
        )
    settings = {k: v for k, v in OmegaConf.to_container(stage, resolve=True).items() if k not in OBJECT_KEYS}
    known = {f.name for f in fields(StageLoop)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"stages.{name}: unknown setting(s) {unknown}; a stage's settings are {sorted(known)}")
    absent = sorted(f.name for f in fields(StageLoop) if f.default is MISSING and f.name not in settings)
    if absent:
        raise ConfigError(f"stages.{name}: missing setting(s) {absent}")
    try:
        return StageLoop(**settings)
    except ValueError as e:
        raise ConfigError(f"stages.{name}.{e}") from e
