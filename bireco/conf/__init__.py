"""bireco's Hydra configs, shipped inside the package so an installed wheel composes from any working directory."""

from pathlib import Path

CONF_DIR = str(Path(__file__).resolve().parent)
