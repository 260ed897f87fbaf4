"""The sentence-transformers export round-trips the real tokenizers of ../shared/models exactly.

Each family's tokenizer with its own template, a tiny random decoder of the tokenizer's vocabulary (the
pretrained stories260K Llama where the tokenizer is its own): the exported folder, loaded with a plain
`SentenceTransformer`, gives bireco's token ids and bireco's embeddings for documents and queries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from bireco.export.sentence_transformers import PROBE_TEXTS, Prompt, write_sentence_transformers
from bireco.models.encoder import TextEncoder
from tests.models.test_templates_real import CASES, TEXTS, template
from tests.shared_files import shared_model

PROMPTS = {"query": Prompt("Given a question, retrieve passages that answer it", ": ")}


def model_for(folder: Path, tokenizer) -> torch.nn.Module:
    if (folder / "model.safetensors").is_file():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.integration
@pytest.mark.parametrize(("name", "folder"), [c for c in CASES if not c[1].endswith("no-tokenizer-json")])
def test_export_round_trips_the_real_tokenizer(name: str, folder: str, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    path = shared_model(folder)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = model_for(path, tok)
    enc = TextEncoder(model, tok, template(name), "eos", max_length=64)
    with torch.no_grad():  # check_tokenization inside compares ids on PROBE_TEXTS before writing
        write_sentence_transformers(model, tok, enc.bound, "eos", 64, PROMPTS, tmp_path / "st", tmp_path / "work")
    st = SentenceTransformer(str(tmp_path / "st"), device="cpu", local_files_only=True)
    texts = [*TEXTS, *PROBE_TEXTS]
    for prompt_name, instruction in ((None, None), ("query", PROMPTS["query"].instruction)):
        ours_ids = enc.bound.encode_batch(texts, [instruction] * len(texts), 64, ": ")
        prompt = st.prompts[prompt_name or st.default_prompt_name]
        theirs = st.tokenizer([prompt + t for t in texts], truncation=True, max_length=64)["input_ids"]
        assert [e.input_ids for e in ours_ids] == [list(t) for t in theirs]
        got = torch.as_tensor(st.encode(texts, prompt_name=prompt_name, batch_size=4))
        want = enc.encode(texts, [instruction] * len(texts), batch_size=5, instruction_separator=": ")
        assert torch.allclose(got, want, atol=1e-5), (prompt_name, (got - want).abs().max())
