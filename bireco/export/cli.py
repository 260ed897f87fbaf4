"""`bireco-export` (and the Hydra plumbing `bireco-encode` shares): thin entry points over the library."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from bireco.conf import CONF_DIR
from bireco.console import console_environment, exit_on_user_error
from bireco.utils.resolvers import register as register_resolvers

log = logging.getLogger("bireco")


def hydra_app(config_name: str, job: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """A Hydra entry point for `conf/<config_name>.yaml` that runs `job(cfg)` (no run folder is created)."""

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def _main(cfg: DictConfig) -> Any:
        try:
            return job(cfg)
        except Exception as e:
            exit_on_user_error(e, f"bireco-{config_name}")
            raise

    def entry() -> Any:
        console_environment()
        register_resolvers()
        return _main()

    return entry


def run_export(cfg: DictConfig) -> str:
    """The `bireco-export` job (conf/export.yaml)."""
    from bireco.export import export_run

    if not cfg.run_dir or not cfg.out:
        raise SystemExit("bireco-export: say what to export and where: run_dir=RUN out=DIR")
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


def main() -> None:
    """`bireco-export run_dir=RUN out=DIR`."""
    hydra_app("export", run_export)()


if __name__ == "__main__":
    main()
