"""`model.attention`: a later token reaches an earlier state iff bidirectional, on Llama, Qwen2 and Mistral.

Each case is one that peers shipped broken: llm2vec #74 (a batch of one without padding, where transformers
drops the mask and SDPA's `is_causal=True` decided), #79 (SDPA told `is_causal=True` next to a mask), GritLM
PR #74 / mteb #1506 (the flag breaking other families). Padding must never reach real tokens in either mode,
and the passes that predict tokens (Stage I's decoder, the warm-up LM) stay causal next to a bidirectional
encoder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    MistralConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from bireco.conf import CONF_DIR
from bireco.config import ConfigError, validate_config
from bireco.lit.module import StageModule
from bireco.losses.objectives import NextTokenPrediction
from bireco.losses.reconstruction import anchored_hidden_states
from bireco.models.attention import AttentionModeError, attends_ahead, attention_kwargs, check_attention
from bireco.models.backbone import BackboneSpec, load_backbone, save_artifact
from bireco.models.encoder import TextEncoder, decoder_of
from bireco.models.templates import Template
from tests.helpers import compose_cfg
from tests.models.conftest import ARCH_SHAPE

SHAPE = ARCH_SHAPE
ARCHS = {
    "llama": (LlamaConfig, {}),
    "qwen2": (Qwen2Config, {}),
    "mistral": (MistralConfig, {}),  # sliding window 4096 (v0.1): the sliding-window mask builders
    "mistral-nowindow": (MistralConfig, {"sliding_window": None}),  # v0.2/v0.3: the full-attention builders
}
IMPLS = ("sdpa", "eager")
MODES = ("causal", "bidirectional")
# name -> (real lengths, padded width, padding side): one row unpadded is where the mask is dropped (llm2vec #74)
BATCHES = {
    "bs1": ([6], None, "right"),
    "bs1-padded-right": ([6], 9, "right"),
    "bs1-padded-left": ([6], 9, "left"),
    "bs3-right": ([7, 4, 5], None, "right"),
    "bs3-left": ([7, 4, 5], None, "left"),
}


def moved(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() > 1e-5)


class TinyModels(dict):
    """(architecture, attention implementation) -> a random tiny model in eval mode, built on first use."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def __missing__(self, key: tuple[str, str]) -> PreTrainedModel:
        cls, extra = ARCHS[key[0]]
        config = cls(vocab_size=len(self.tokenizer), pad_token_id=self.tokenizer.pad_token_id, **SHAPE, **extra)
        torch.manual_seed(0)
        self[key] = AutoModelForCausalLM.from_config(config, attn_implementation=key[1]).eval()
        return self[key]


@pytest.fixture(scope="module")
def models(tiny_tokenizer: PreTrainedTokenizerFast) -> TinyModels:
    return TinyModels(tiny_tokenizer)


def encoder_for(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, mode: str) -> TextEncoder:
    return TextEncoder(model, tokenizer, Template(name="plain"), "eos", max_length=64, attention=mode)


def padded_batch(
    rows: list[list[int]], side: str, pad_id: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """(ids, mask, where each row's real tokens sit)."""
    width = width or max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros_like(ids)
    where = []
    for r, row in enumerate(rows):
        start = width - len(row) if side == "left" else 0
        ids[r, start : start + len(row)] = torch.tensor(row)
        mask[r, start : start + len(row)] = 1
        where.append(list(range(start, start + len(row))))
    return ids, mask, where


def random_rows(lengths: list[int], vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]  # 0-2: bos, eos, pad


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_next_token_changes_the_state_before_it_iff_bidirectional(
    models, tiny_tokenizer, arch: str, impl: str, mode: str, batch: str
) -> None:
    model = models[arch, impl]
    enc = encoder_for(model, tiny_tokenizer, mode)
    lengths, width, side = BATCHES[batch]
    rows = random_rows(lengths, len(tiny_tokenizer))
    ids, mask, where = padded_batch(rows, side, enc.pad_id, width)
    with torch.no_grad():
        before = enc.hidden_states(ids, mask)
        for t in range(min(lengths) - 1):
            changed = ids.clone()
            for r, pos in enumerate(where):
                changed[r, pos[t + 1]] = 3 + (ids[r, pos[t + 1]] - 2) % (len(tiny_tokenizer) - 3)
            after = enc.hidden_states(changed, mask)
            for r, pos in enumerate(where):
                assert moved(before[r, pos[t]], after[r, pos[t]]) == (mode == "bidirectional"), (r, t)
                assert moved(before[r, pos[t + 1]], after[r, pos[t + 1]])  # the changed token itself


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_padding_never_reaches_real_tokens(models, tiny_tokenizer, arch: str, impl: str, mode: str, side: str) -> None:
    """Real tokens' states equal the row's own unpadded pass, whatever the padding holds."""
    enc = encoder_for(models[arch, impl], tiny_tokenizer, mode)
    rows = random_rows([7, 3, 5], len(tiny_tokenizer), seed=1)
    ids, mask, where = padded_batch(rows, side, enc.pad_id)
    noise = torch.where(mask.bool(), ids, torch.randint_like(ids, 3, len(tiny_tokenizer)))  # pads hold text
    with torch.no_grad():
        batched = enc.hidden_states(ids, mask)
        noisy = enc.hidden_states(noise, mask)
        for r, (row, pos) in enumerate(zip(rows, where, strict=True)):
            alone = enc.hidden_states(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long))[0]
            assert torch.allclose(batched[r, pos], alone, atol=1e-5), r
            assert torch.allclose(noisy[r, pos], alone, atol=1e-5), r


def test_the_decoder_passes_stay_causal_next_to_a_bidirectional_encoder(models, tiny_tokenizer) -> None:
    """Stage I's `[anchor ; tokens]` pass passes no mode: it must stay causal after bidirectional passes."""
    model = models["llama", "sdpa"]
    enc = encoder_for(model, tiny_tokenizer, "bidirectional")
    for lengths in ([6], [6, 4]):  # one row without padding; right padding (Stage I's layout)
        ids, mask, _ = padded_batch(random_rows(lengths, len(tiny_tokenizer), seed=2), "right", enc.pad_id)
        with torch.no_grad():
            anchor = enc(ids, mask)
            before = anchored_hidden_states(model, anchor, ids, mask)
            changed = ids.clone()
            changed[:, 2] = 3 + (ids[:, 2] - 2) % (len(tiny_tokenizer) - 3)
            after = anchored_hidden_states(model, anchor, changed, mask)
        # token 2 enters at position 3: positions 0..2 cannot see it, position 3 does
        assert not moved(before[:, :3], after[:, :3])
        assert moved(before[:, 3], after[:, 3])
    assert not attends_ahead(decoder_of(model), len(tiny_tokenizer))  # no mode left behind in the config


def test_the_warmup_lm_loss_is_causal_whatever_the_encoder_mode(models, tiny_tokenizer) -> None:
    model = models["llama", "sdpa"]
    ids, mask, _ = padded_batch(random_rows([6, 4], len(tiny_tokenizer), seed=3), "right", tiny_tokenizer.pad_token_id)
    batch = {"query": {"input_ids": ids, "attention_mask": mask}}
    with torch.no_grad():
        lm = NextTokenPrediction(chunk_size=4096)
        losses = {m: lm.lm_loss(encoder_for(model, tiny_tokenizer, m), batch) for m in MODES}
        leaked = encoder_for(model, tiny_tokenizer, "bidirectional").hidden_states(ids, mask)
    assert torch.equal(losses["causal"], losses["bidirectional"])
    # the loss would see it: a bidirectional pass gives other states at the predicting positions
    assert moved(leaked[:, :-1], encoder_for(model, tiny_tokenizer, "causal").hidden_states(ids, mask)[:, :-1])


def test_bidirectional_under_lora_gradient_checkpointing_and_training_mode(make_tiny_model, tiny_tokenizer) -> None:
    from peft import LoraConfig, get_peft_model

    model = make_tiny_model()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    model.enable_input_require_grads()
    model.train()
    enc = encoder_for(model, tiny_tokenizer, "bidirectional")
    ids, mask, _ = padded_batch(random_rows([6, 4], len(tiny_tokenizer), seed=4), "right", enc.pad_id)
    changed = ids.clone()
    changed[:, 1] = 3 + (ids[:, 1] - 2) % (len(tiny_tokenizer) - 3)
    hidden = enc.hidden_states(ids, mask)
    assert moved(hidden[:, 0], enc.hidden_states(changed, mask)[:, 0])
    enc(ids, mask).pow(2).sum().backward()  # recomputed blocks get the same mode as the forward
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_checkpoint_flagged_is_causal_false_loads_causal(tmp_path: Path, make_tiny_model, tiny_tokenizer) -> None:
    """An embedder's config (`is_causal: false`) would make Stage I's decoder passes see their targets."""
    model = make_tiny_model()
    model.config.is_causal = False
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    assert attends_ahead(decoder_of(AutoModelForCausalLM.from_pretrained(tmp_path)), len(tiny_tokenizer))
    loaded, _ = load_backbone(BackboneSpec(str(tmp_path)))
    assert not attends_ahead(decoder_of(loaded), len(tiny_tokenizer))
    assert attends_ahead(decoder_of(loaded), len(tiny_tokenizer), **attention_kwargs("bidirectional"))


def test_a_stage_artifact_brings_its_attention_mode(tmp_path: Path, make_tiny_model, tiny_tokenizer) -> None:
    """A stage writes its mode into artifact.json; loading reproduces it (bireco-eval, bireco-encode, export)."""
    enc = encoder_for(make_tiny_model(), tiny_tokenizer, "bidirectional")
    bidi = StageModule(enc, NextTokenPrediction(chunk_size=4096), torch.optim.AdamW, None, "warmup").save_artifact(
        tmp_path / "bidi", "base"
    )
    meta = {"stage": "contrastive", "template": Template(name="plain").to_dict(), "pooling": "eos", "max_length": 32}
    old = save_artifact(enc.model, tiny_tokenizer, tmp_path / "old", meta)  # written before the mode existed
    loaded = TextEncoder.from_artifact(bidi, device="cpu")
    assert loaded.attention == "bidirectional"
    assert attends_ahead(decoder_of(loaded.model), len(tiny_tokenizer), **attention_kwargs(loaded.attention))
    assert TextEncoder.from_artifact(old, device="cpu").attention == "causal"
    assert TextEncoder.from_artifact(bidi, device="cpu", attention="causal").attention == "causal"


def test_unknown_modes_and_untested_architectures_are_refused(tiny_tokenizer) -> None:
    with pytest.raises(AttentionModeError, match=r"model.attention='sideways': choose one of \['causal'"):
        check_attention("sideways")
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(AttentionModeError, match=r"not 'gpt2'; use model\.attention=causal"):
        encoder_for(gpt2, tiny_tokenizer, "bidirectional")
    assert encoder_for(gpt2, tiny_tokenizer, "causal").attention == "causal"


def test_the_config_check_names_the_field_and_every_preset_stays_causal() -> None:
    with pytest.raises(ConfigError, match=r"^model.attention='sideways': choose one of \['causal', 'bidirectional'\]"):
        validate_config(compose_cfg(["model.attention=sideways"]))
    validate_config(compose_cfg(["model.attention=bidirectional"]))
    presets = sorted(Path(CONF_DIR, "model").glob("*.yaml"))
    assert len(presets) >= 7 and all(OmegaConf.load(p).model.attention == "causal" for p in presets)
