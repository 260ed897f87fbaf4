"""The `bireco-export` job (`bireco.cli.export` composes conf/export.yaml and runs it)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

log = logging.getLogger("bireco")


def run_export(cfg: DictConfig) -> str:
    """The `bireco-export` job (conf/export.yaml)."""
    from bireco.export import ExportError, export_run

    unset = [f"{key}=" for key in ("run_dir", "out") if not cfg[key]]
    if unset:
        raise ExportError(f"say what to export and where: run_dir=RUN out=DIR ({' and '.join(unset)} not set)")
    out = export_run(
        cfg.run_dir,
        cfg.out,
        eval_cfg=cfg.eval if cfg.eval.kind != "none" else None,
        query_instruction=cfg.query_instruction,
        summary=cfg.summary,
        overwrite=cfg.overwrite,
        hf_merged=cfg.hf_merged,
        hf_adapter=cfg.hf_adapter,
    )
    log.info("exported to %s: SentenceTransformer(%r) loads it", out, str(out))
    return str(out)
