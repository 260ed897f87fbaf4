"""OmegaConf resolvers used by the configs (registered on import of `bireco.cli`)."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

MAX_DIRNAME = 120


def safe_dirname(text: str) -> str:
    """A run folder name from Hydra's override string: readable, deterministic, and never too long.

    Long override lists (sweeps with many fixed overrides) would exceed the 255-byte file-name limit; they keep
    a readable prefix plus a hash of the whole string, so the same command always finds the same folder.
    """
    name = (text or "default").replace("/", "_")
    if len(name) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_DIRNAME - 11]}-{digest}"


def register() -> None:
    if not OmegaConf.has_resolver("bireco_dirname"):
        OmegaConf.register_new_resolver("bireco_dirname", safe_dirname)
