"""The sentence-transformers export: exact token ids, identical embeddings, standard modules, same mteb scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bireco.export.sentence_transformers import (
    DOCUMENT_PROMPT,
    ExportTokenizationError,
    Prompt,
    check_tokenization,
    st_prompts,
    template_tokenizer,
)
from bireco.models.templates import Template
from bireco.models.tiny import train_tokenizer

TEXTS = [f"person {i} lives in city {i % 7}; she plays the violin: {i} times" for i in range(300)]
PROMPTS = {
    "query": Prompt("find the city", ": "),
    "paraphrase": Prompt("Retrieve a sentence; stating facts", "; "),
    "nosep": Prompt("violin", ""),
}
# a chat-like template on the tiny tokenizer: prefix and suffix are multi-token, the pooled token is EOS
CHAT = Template(name="chat", prefix="user says:\n", suffix=" [end]", add_bos=True, instruction_separator="; ")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(TEXTS, 320, tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize(
    "template", [Template(), CHAT, Template(prefix=" x:", strip=True)], ids=["plain", "chat", "strip"]
)
def test_exported_tokenizer_gives_bireco_ids(tokenizer, template: Template) -> None:
    bound = template.bind(tokenizer)
    st_tok = template_tokenizer(tokenizer, bound, max_length=64)
    texts = ["person 3 lives in city 3", ": violin", "  two  spaces ", "violin " * 80, "find the city", "\nnl"]
    # 6 texts x (no prompt + 3 prompts), the long one truncated to 64 tokens with the template kept
    assert check_tokenization(st_tok, bound, PROMPTS, 64, texts) == 24
    long_ids = st_tok(st_prompts(bound, PROMPTS)["query"] + texts[3], truncation=True, max_length=64)["input_ids"]
    ours = bound.encode_batch([texts[3]], ["find the city"], 64, ": ")[0].input_ids
    assert len(long_ids) == 64 and long_ids == ours and long_ids[-1] == bound.eos_id  # suffix + EOS survive
    # the caller's tokenizer is left untouched
    assert tokenizer("find the city")["input_ids"] == tokenizer("find the city", add_special_tokens=False)["input_ids"]


def test_prompts_carry_the_template_prefix_and_documents_get_it_by_default(tokenizer) -> None:
    bound = CHAT.bind(tokenizer)
    prompts = st_prompts(bound, PROMPTS)
    assert prompts[DOCUMENT_PROMPT] == "user says:\n"
    assert prompts["query"] == "user says:\nfind the city: "
    assert prompts["nosep"] == "user says:\nviolin"


def test_a_mismatch_is_refused_naming_prompt_and_text(tokenizer) -> None:
    """check_tokenization fails loudly when the exported tokenizer and bireco disagree (here: another template)."""
    bound = CHAT.bind(tokenizer)
    st_tok = template_tokenizer(tokenizer, Template().bind(tokenizer), max_length=40)
    with pytest.raises(ExportTokenizationError, match="prompt '<document>', text 'violin in city 3'"):
        check_tokenization(st_tok, bound, {"query": PROMPTS["query"]}, 40, ["violin in city 3"])


@pytest.mark.integration
def test_sentence_transformer_loads_offline_with_standard_modules(exported_run) -> None:
    from sentence_transformers import SentenceTransformer

    modules = json.loads((exported_run.export / "modules.json").read_text())
    assert [m["type"].split(".")[0] for m in modules] == ["sentence_transformers"] * 3
    st = SentenceTransformer(str(exported_run.export), device="cpu", local_files_only=True)  # no trust_remote_code
    assert type(st[1]).__name__ == "Pooling" and st[1].pooling_mode == "lasttoken"
    assert type(st[2]).__name__ == "Normalize"
    assert st.similarity_fn_name == "cosine"
    assert st.prompts["query"] == "Given a question about a person, retrieve the profile that answers it: "
    assert st.prompts["fact_qa"] == "Given a question about a person, retrieve the profile that answers it; "
    assert st.prompts["ArguAna-query"] == "Given a claim, find documents that refute the claim: "


@pytest.mark.integration
def test_same_embeddings_as_the_bireco_encoder(exported_run) -> None:
    from omegaconf import OmegaConf
    from sentence_transformers import SentenceTransformer

    from bireco.eval.models import load_encoder, resolve_model

    st = SentenceTransformer(str(exported_run.export), device="cpu", local_files_only=True)
    cfg = OmegaConf.create({"run_dir": str(exported_run.run), "artifact": None, "model": {"dtype": "float32"}})
    enc = load_encoder(resolve_model(cfg))
    texts = ["Who was born in 1950?", "Ada Smith is a violinist from Lyon.", "word " * 300, "Café ✓", ": colon"]
    n = len(texts)
    docs = torch.as_tensor(st.encode_document(texts, batch_size=2))
    assert torch.allclose(docs, enc.encode(texts, batch_size=3), atol=1e-5)
    queries = torch.as_tensor(st.encode_query(texts, batch_size=2))
    instr = "Given a question about a person, retrieve the profile that answers it"
    assert torch.allclose(queries, enc.encode(texts, [instr] * n, batch_size=3, instruction_separator=": "), atol=1e-5)
    assert (queries - docs).abs().max() > 1e-2  # the instruction really changes the query embeddings
    source = torch.as_tensor(st.encode(texts, prompt_name="entity_search", batch_size=4))
    instr = "Given a keyword query, retrieve the profile it is looking for"
    assert torch.allclose(source, enc.encode(texts, [instr] * n, batch_size=3, instruction_separator="; "), atol=1e-5)


@pytest.mark.integration
def test_mteb_scores_the_export_like_bireco_eval(exported_run, tmp_path: Path) -> None:
    """mteb's own sentence-transformers path on the exported folder = bireco-eval on the run (same task)."""
    import mteb
    from mteb.cache import ResultCache
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from omegaconf import OmegaConf
    from sentence_transformers import SentenceTransformer

    from bireco.data.prepare import prepare_data
    from bireco.eval.local_tasks import discover_tasks

    run_cfg = OmegaConf.load(exported_run.run / "config.yaml")
    tasks = discover_tasks(prepare_data(run_cfg).probe_dir.parent)  # the folder bireco-eval used
    assert [t.metadata.name for t in tasks] == ["retrieval"]
    wrapper = SentenceTransformerEncoderWrapper(
        SentenceTransformer(str(exported_run.export), device="cpu", local_files_only=True)
    )
    result = mteb.evaluate(
        wrapper,
        tasks,
        cache=ResultCache(cache_path=tmp_path / "mteb"),
        overwrite_strategy="always",
        encode_kwargs={"batch_size": 8},
        show_progress_bar=False,
    )
    assert not result.exceptions, result.exceptions
    ours = exported_run.summary["tasks"]["retrieval"]["main_score"]
    assert 100 * result.task_results[0].get_score() == pytest.approx(ours, abs=1e-6)
    assert 0 < ours < 100  # a real ranking, not a degenerate all-or-nothing score


@pytest.mark.parametrize(
    ("prefix", "specials"),
    [
        ("<|start_header_id|>user<|end_header_id|>\n\n", ["<|start_header_id|>", "<|end_header_id|>"]),
        ("<|im_start|>user\n", ["<|im_start|>"]),
        ("", []),
    ],
)
def test_the_strip_normalizer_trims_the_content_and_never_the_prefix_tail(prefix: str, specials: list[str]) -> None:
    """Llama-3's empty or whitespace-only document lost the header's "\\n\\n" (cos 0.983 against bireco)."""
    from types import SimpleNamespace

    from bireco.export.sentence_transformers import _strip_normalizer

    bound = SimpleNamespace(
        template=SimpleNamespace(prefix=prefix),
        tokenizer=SimpleNamespace(get_added_vocab=lambda: dict.fromkeys(specials)),
    )
    tail = prefix[max((prefix.rfind(t) + len(t) for t in specials), default=0) :]  # the stretch's plain head
    norm = _strip_normalizer(bound)
    for content in ("", " ", "\t\n ", "abc  ", "  abc \n", "a b"):
        assert norm.normalize_str(tail + content) == tail + content.strip(), (prefix, content)
