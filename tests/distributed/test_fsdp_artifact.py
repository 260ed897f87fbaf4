"""Under FSDP the stage artifact is written from the gathered whole weights, not from rank 0's shard.

2 CPU processes (gloo) wrap a stage module the way Lightning's FSDP strategy does (each decoder block one unit,
`use_orig_params` for LoRA's frozen base, the module as the root). Each rank then holds a slice of every
parameter; `full_state_dict` gathers them, and the artifact rank 0 writes holds exactly the weights the module
had before sharding — full fine-tuning and LoRA alike. (Lightning itself refuses FSDP on CPU, hence the hand
wrapping; on GPUs `full_state_dict` takes torch's CPU-offload path instead.)
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.distributed.harness import free_port

pytestmark = pytest.mark.integration


def _module(kind: str, base: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bireco.lit.module import StageModule
    from bireco.losses.objectives import NextTokenPrediction
    from bireco.models.encoder import TextEncoder
    from bireco.models.templates import Template

    torch.manual_seed(5)
    model = AutoModelForCausalLM.from_pretrained(base)
    if kind == "adapter":
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_()  # B starts at zero: make the adapter visible
    else:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)  # differ from the base, as a trained stage does
    encoder = TextEncoder(model, AutoTokenizer.from_pretrained(base), Template(name="plain"))
    return StageModule(encoder, NextTokenPrediction(chunk_size=4096), torch.optim.AdamW, None, kind)


def _worker(rank: int, port: int, base: str, out: str) -> None:
    import torch.distributed as dist
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from bireco.distributed import _layer_classes, full_state_dict

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    for kind in ("full", "adapter"):
        module = _module(kind, Path(base))
        if rank == 0:
            torch.save({k: v.clone() for k, v in module.model.state_dict().items()}, Path(out) / f"{kind}_want.pt")
        policy = ModuleWrapPolicy(_layer_classes(module.model))
        root = FSDP(module, auto_wrap_policy=policy, use_orig_params=True, device_id=torch.device("cpu"))
        strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")] * 2)
        strategy.model = root
        sizes = [p.numel() for p in module.parameters()]
        weights = full_state_dict(SimpleNamespace(strategy=strategy))  # every rank: a collective
        if rank == 0:
            module.save_artifact(Path(out) / kind, base, weights)
            torch.save(sizes, Path(out) / f"{kind}_local_sizes.pt")
        dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch.multiprocessing as mp

    from tests.distributed.harness import make_base_model

    root = tmp_path_factory.mktemp("fsdp_artifact")
    base = make_base_model(root / "base")
    mp.spawn(_worker, args=(free_port(), str(base), str(root)), nprocs=2, join=True)
    return root


@pytest.mark.parametrize("kind", ["full", "adapter"])
def test_fsdp_artifact_holds_the_whole_unsharded_weights(written: Path, kind: str) -> None:
    from bireco.models.backbone import BackboneSpec, load_backbone

    full_sizes = [p.numel() for p in _module(kind, written / "base").parameters()]
    local = torch.load(written / f"{kind}_local_sizes.pt")
    assert sum(local) < sum(full_sizes), "precondition: rank 0 held only a shard"
    want = torch.load(written / f"{kind}_want.pt")
    got = load_backbone(BackboneSpec(str(written / kind)), merge_adapters=False)[0].state_dict()
    keys = [k for k in want if "lora_" in k] if kind == "adapter" else [k for k in want if k != "lm_head.weight"]
    assert keys
    for k in keys:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
