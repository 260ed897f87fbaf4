"""Retrieval probe: a cheap in-process retrieval score (recall@1, MRR@10) on a BEIR-layout folder.

This is the convergence signal logged during training (the paper evaluates Stage II every 25 steps); the full
evaluation goes through mteb's own task classes and evaluators.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from bireco.models.encoder import TextEncoder


def _open(path: Path):
    gz = path.with_name(path.name + ".gz")
    if not path.exists() and gz.exists():
        return gzip.open(gz, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


@dataclass
class RetrievalTask:
    """A BEIR folder in memory: corpus / queries / qrels (query id -> relevant doc ids)."""

    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, set[str]]

    @classmethod
    def load(cls, folder: str | Path, max_queries: int | None = None) -> RetrievalTask:
        folder = Path(folder)
        with _open(folder / "corpus.jsonl") as f:
            docs = [json.loads(line) for line in f if line.strip()]
        with _open(folder / "queries.jsonl") as f:
            queries = [json.loads(line) for line in f if line.strip()]
        qrels: dict[str, set[str]] = {}
        with open(folder / "qrels.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if float(row["score"]) > 0:
                    qrels.setdefault(row["query-id"], set()).add(row["corpus-id"])
        queries = [q for q in queries if q["_id"] in qrels][:max_queries]
        return cls(
            [d["_id"] for d in docs],
            [(d.get("title", "") + " " + d["text"]).strip() for d in docs],
            [q["_id"] for q in queries],
            [q["text"] for q in queries],
            qrels,
        )


def ranking_metrics(scores: torch.Tensor, relevant: list[set[int]], k: int = 10) -> dict[str, float]:
    """recall@1 and MRR@k from a (Q, D) score matrix and each query's relevant doc indices."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
    recall1 = mrr = 0.0
    for ranked, rel in zip(top, relevant, strict=True):
        recall1 += len(rel & {ranked[0]}) / len(rel)
        mrr += next((1.0 / (r + 1) for r, d in enumerate(ranked) if d in rel), 0.0)
    n = max(len(relevant), 1)
    return {"recall@1": recall1 / n, f"mrr@{k}": mrr / n}


def retrieval_probe(
    encoder: TextEncoder, task: RetrievalTask, instruction: str | None, batch_size: int = 64
) -> dict[str, float]:
    """Encode queries (with the instruction) and the corpus (without), rank by cosine, score."""
    q = encoder.encode(task.query_texts, [instruction] * len(task.query_texts), batch_size=batch_size)
    d = encoder.encode(task.corpus_texts, None, batch_size=batch_size)
    index = {cid: i for i, cid in enumerate(task.corpus_ids)}
    relevant = [{index[c] for c in task.qrels[qid] if c in index} for qid in task.query_ids]
    return ranking_metrics(q @ d.t(), relevant)
