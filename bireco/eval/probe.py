"""Retrieval probe: a cheap in-process retrieval score (hit@1, recall@1, MRR@10) on a BEIR-layout folder.

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
    """Means over queries, from a (Q, D) score matrix and each query's relevant doc indices:

    - `hit@1`: 1 when the top document is relevant (the share of queries answered first time);
    - `recall@1`: relevant documents in the top 1 / all relevant documents (≤ 1/2 for a query with two);
    - `mrr@k`: 1 / rank of the first relevant document in the top k, 0 when none is.
    """
    per = per_query_metrics(scores, relevant, k)
    n = max(len(relevant), 1)
    return {name: sum(values) / n for name, values in per.items()}


def per_query_metrics(scores: torch.Tensor, relevant: list[set[int]], k: int = 10) -> dict[str, list[float]]:
    """Each query's `hit@1`, `recall@1` and reciprocal rank within the top k (`mrr@k`), in query order: the
    units a paired comparison of two models resamples."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
    out: dict[str, list[float]] = {"hit@1": [], "recall@1": [], f"mrr@{k}": []}
    for ranked, rel in zip(top, relevant, strict=True):
        out["hit@1"].append(float(ranked[0] in rel))
        out["recall@1"].append(len(rel & {ranked[0]}) / len(rel))
        out[f"mrr@{k}"].append(next((1.0 / (r + 1) for r, d in enumerate(ranked) if d in rel), 0.0))
    return out


def retrieval_probe(
    encoder: TextEncoder, task: RetrievalTask, instruction: str | None, batch_size: int = 64, per_query: bool = False
) -> dict[str, float] | dict[str, list[float]]:
    """Encode queries (with the instruction) and the corpus (without), rank by cosine, score (means over the
    queries, or with `per_query` each query's scores in `task.query_ids` order)."""
    q = encoder.encode(task.query_texts, [instruction] * len(task.query_texts), batch_size=batch_size)
    d = encoder.encode(task.corpus_texts, None, batch_size=batch_size)
    index = {cid: i for i, cid in enumerate(task.corpus_ids)}
    relevant = [{index[c] for c in task.qrels[qid] if c in index} for qid in task.query_ids]
    return (per_query_metrics if per_query else ranking_metrics)(q @ d.t(), relevant)
