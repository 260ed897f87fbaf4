"""The exported model's README.md: how to load it, how it was trained, on what, and how it scored.

Everything comes from the run's own files (config.yaml, results.json, eval/summary.json, audit.json), so the card
cannot drift from what was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from bireco.eval.contamination import FIELDS
from bireco.export.sentence_transformers import Prompt
from bireco.runs import Run


def _frontmatter(info: Mapping[str, Any]) -> str:
    meta = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "feature-extraction", "bireco", "text-embeddings"],
    }
    if info.get("base_hub_name"):
        meta["base_model"] = info["base_hub_name"]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _stages(results: Mapping[str, Any], kinds: list[str]) -> str:
    rows = ["| # | stage | steps | weights |", "|---|---|---:|---|"]
    for i, rec in enumerate(results.get("stage_results", [])):
        kind = {"adapter": "LoRA adapter", "full": "full fine-tuning"}.get(kinds[i] if i < len(kinds) else "", "?")
        rows.append(f"| {i} | {rec.get('stage')} | {rec.get('steps')} | {kind} |")
    return "\n".join(rows)


def _probe(probe: Mapping[str, Any] | None) -> str:
    if not probe:
        return "No retrieval probe ran in the last stage."
    parts = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in probe.items() if k != "step"]
    return "Final retrieval probe (held-out): " + ", ".join(parts)


def _data(run_cfg: Mapping[str, Any]) -> str:
    data = run_cfg.get("data", {})
    lines = [f"- kind: `{data.get('kind')}`" + (f", path: `{data['path']}`" if data.get("path") else "")]
    if data.get("kind") == "synthetic":
        lines.append(
            f"- the generated world of fictional people (bireco/data/synthetic.py), spec: `{data.get('world')}`"
        )
    sources = data.get("sources") or {}
    if sources:
        lines += ["", "| source | query instruction | sampling ratio |", "|---|---|---|"]
        for name, s in sources.items():
            s = s or {}
            ratio = "proportional" if s.get("ratio") is None else s["ratio"]
            lines.append(f"| {name} | {s.get('instruction') or '—'} | {ratio} |")
    return "\n".join(lines)


def _eval(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return "No evaluation summary was found for this run (run `bireco-eval run_dir=...` before exporting)."
    rows = ["| task | category | metric | score |", "|---|---|---|---:|"]
    for name, t in sorted(summary.get("tasks", {}).items()):
        rows.append(f"| {name} | {t['category']} | {t['metric']} | {t['main_score']:.2f} |")
    for cat, score in summary.get("categories", {}).items():
        rows.append(f"| **{cat}** (mean) | | | {score:.2f} |")
    if summary.get("average") is not None:
        rows.append(f"| **average** | | | {summary['average']:.2f} |")
    settings = summary.get("settings", {})
    note = (
        f"\nmteb {settings.get('mteb_version')}, eval `{settings.get('eval')}`, instruction separator "
        f"{settings.get('instruction_separator')!r}, weights sha256 `{str(settings.get('weights_sha256'))[:16]}`."
        if settings
        else ""
    )
    return "Scores are mteb main scores × 100.\n\n" + "\n".join(rows) + note


def _source_tasks(run_cfg: Mapping[str, Any]) -> list[str]:
    """The mteb tasks the config's training sources are declared to come from (`data.sources.<name>.mteb_tasks`)."""
    sources = (run_cfg.get("data") or {}).get("sources") or {}
    return sorted({t for s in sources.values() if isinstance(s, Mapping) for t in s.get("mteb_tasks") or []})


def _audit(audit: Mapping[str, Any] | None, run_cfg: Mapping[str, Any]) -> str:
    """The contamination audit's counts and the mteb `training_datasets` declaration, or that no audit ran."""
    if not audit:
        known = _source_tasks(run_cfg)
        lower = (
            f" The training sources' config names these mteb tasks as their origin (a lower bound): {known}."
            if known
            else ""
        )
        return (
            "No contamination audit was run for this run (`bireco-audit run_dir=RUN eval.data_root=TASKS` writes "
            "`RUN/audit.json`), so mteb's `training_datasets` is not declared: unknown, not empty." + lower
        )
    s, train, decl = audit["settings"], audit["train"], audit["training_datasets"]
    rows = ["| task | mteb name | queries: exact / near of n | corpus: exact / near of n |", "|---|---|---|---|"]
    for name, t in sorted(audit["tasks"].items()):
        cells = [f"{t['fields'][f]['exact']} / {t['fields'][f]['near']} of {t['fields'][f]['n']}" for f in FIELDS]
        rows.append(f"| {name} | {t.get('mteb_name') or '—'} | {cells[0]} | {cells[1]} |")
    declared = "{" + ", ".join(f'"{n}"' for n in decl["declared"]) + "}" if decl["declared"] else "set()"
    reasons = [f"- `{n}`: " + "; ".join(r) for n, r in decl["reasons"].items()]
    unnamed = decl.get("overlapping_tasks_without_mteb_name") or []
    return "\n".join(
        [
            f"The {train['rows']:,} training rows (`{train['path']}`; query, positive and negative texts) against "
            f"the evaluation tasks of `{audit['eval']['name']}` (`{audit['eval'].get('task_root') or 'mteb'}`): "
            f"exact = same text after normalisation, near = Jaccard ≥ {s['jaccard_threshold']} of "
            f"{s['shingles']} ({s['library']} {s['library_version']} MinHash LSH, confirmed exactly).",
            "",
            *rows,
            "",
            "mteb `ModelMeta` declaration:",
            "",
            "```python",
            f"training_datasets={declared}",
            "```",
            "",
            *reasons,
            *([f"- overlap in tasks mteb does not have: {unnamed}"] if unnamed else []),
        ]
    )


def _attention(mode: str) -> str:
    if mode == "causal":
        return "causal attention (each token sees the ones before it), as pretrained"
    return (
        f"{mode} attention in the encoder (`is_causal: false` in `config.json`, honoured by transformers 5.2+; "
        "older versions would load it causal)"
    )


def _prompts(prompts: Mapping[str, Prompt]) -> str:
    rows = ["| prompt name | instruction | separator |", "|---|---|---|"]
    rows += [f"| `{n}` | {p.instruction} | `{p.separator!r}` |" for n, p in prompts.items()]
    return "\n".join(rows)


def render_model_card(info: Mapping[str, Any]) -> str:
    """Markdown model card.

    Args:
        info: `name`, `run_dir`, `results` (results.json), `run_cfg` (config.yaml as a dict), `template`,
            `pooling`, `max_length`, `attention` (default causal), `prompts` (name -> Prompt), `summary` (eval
            summary.json or None), `adapter` (what `write_adapter` wrote, or None), `stage_kinds` (full/adapter
            per stage), `base_hub_name`, and optionally `audit` (an audit.json; default: the run folder's, if any).
    """
    results, run_cfg, template = info["results"], info["run_cfg"], info["template"]
    adapter = info.get("adapter")
    audit = info["audit"] if "audit" in info else Run(info["run_dir"]).audit()
    adapter_text = (
        f"`hf/adapter` is the last stage's LoRA adapter (peft) on `{adapter['base']}`"
        + (f" @ `{adapter['base_revision']}`" if adapter.get("base_revision") else "")
        + (" — exported as `hf/base`, since no hub has it" if adapter["base_exported"] else "")
        + ".\n"
        if adapter
        else "The last stage trained full weights, so there is no adapter; `hf/merged` is the model.\n"
    )
    return f"""{_frontmatter(info)}
# {info["name"]}

A text embedder trained with **bireco** (bidirectional reconstruction, Su et al., EMNLP 2025, then contrastive
InfoNCE) from the run `{info["run_dir"]}`: pipeline `{results.get("pipeline")}`, model preset
`{results.get("model")}`, base `{results.get("base")}`.

## Use

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("PATH")              # this folder; no trust_remote_code, works offline
q = model.encode_query(["Who lives in Paris?"])  # the `query` prompt: the default query instruction
d = model.encode_document(["A profile ..."])     # documents get no instruction
model.encode(["..."], prompt_name="NAME")        # any prompt below
```

- The template is applied by the tokenizer itself: `{template.get("name")}` (BOS: {template.get("add_bos")},
  prefix {template.get("prefix")!r}, suffix {template.get("suffix")!r}, pooled token
  {template.get("eos_token") or "the tokenizer's EOS"}), so every text is wrapped exactly as in training.
  Pooling `{info["pooling"]}`, L2-normalized, cosine similarity, at most {info["max_length"]} tokens
  (template included; only the text is truncated); {_attention(info.get("attention", "causal"))}.
- These embeddings equal bireco's own encoder (fp32, within 1e-5): the export checks token ids against bireco
  before writing. A prompt string that is not one of the prompts below is prepended as plain text, which may
  tokenize differently at the boundary; use `prompt_name=`.
- `hf/merged`: the merged causal LM (transformers) with the original tokenizer; also a bireco artifact
  (`bireco-eval artifact=PATH/hf/merged`, `bireco-encode model_dir=PATH input=texts.jsonl output=emb.npy`).
- {adapter_text}
## Prompts

{_prompts(info["prompts"])}

## Training pipeline

{_stages(results, info.get("stage_kinds", []))}

{_probe(results.get("probe"))}

## Data

{_data(run_cfg)}

## Evaluation

{_eval(info.get("summary"))}

## Contamination audit

{_audit(audit, run_cfg)}

## Configuration

<details><summary>The run's resolved config.yaml</summary>

```yaml
{yaml.safe_dump(run_cfg, sort_keys=False).rstrip()}
```

</details>
"""
