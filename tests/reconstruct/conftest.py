"""A tiny model trained with Stage I's own loss until every embedding decodes to its pair's other side.

Random word pairs: a document is unpredictable except through its query's embedding (and back), so a model that
reproduces them exactly *must* read the embedding, and the decoder must lay it out exactly as training did.
EOS is a target here so that decoding stops by itself. Measured: 300 steps, final loss ~0.003 nats/token,
every pair decoded exactly in both directions; ~10-15 s on 2 cores.
"""

from __future__ import annotations

import pytest
import torch

from bireco.losses.reconstruction import bidirectional_reconstruction_loss
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Segment, Template
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer
from bireco.reconstruct.reconstructor import Pair
from tests.reconstruct.helpers import ALL_SEGMENTS, INSTRUCTION, STEPS, make_pairs


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second thread only adds synchronization (seconds per test on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextEncoder, list[Pair]]:
    pairs = make_pairs()
    texts = [f"{INSTRUCTION}; {p.query} {p.positive}" for p in pairs] * 5
    tok = train_tokenizer(texts, 150, tmp_path_factory.mktemp("tok"))
    spec = TinyLlamaSpec(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        seed=0,
    )
    model = build_tiny_model(spec, tok)
    enc = TextEncoder(model, tok, Template(), "eos", 64)
    q = enc.tokenize([p.query for p in pairs], [p.instruction for p in pairs])
    d = enc.tokenize([p.positive for p in pairs])
    targets = [Segment[s.upper()] for s in ALL_SEGMENTS]
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices this small gain nothing from 2 threads, and lose a lot on a busy machine
    try:
        for _ in range(STEPS):
            e_q, e_d = enc(q["input_ids"], q["attention_mask"]), enc(d["input_ids"], d["attention_mask"])
            loss = bidirectional_reconstruction_loss(model, e_q, e_d, q, d, 0.5, targets)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return enc, pairs
