"""A non-editable install works anywhere: the wheel carries the configs, and its console scripts compose and
train from a folder that has no bireco source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import FAST

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def _sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel` of a copy of the source (an in-tree build would leave build/ in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "bireco", src / "bireco", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)])
    (whl,) = dist.glob("bireco-*.whl")
    return whl


def test_the_wheel_carries_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    ours = {str(p.relative_to(REPO)) for p in (REPO / "bireco" / "conf").rglob("*.yaml")}
    assert ours and ours <= names, sorted(ours - names)[:5]
    assert "bireco/results/paper_table.csv" in names  # bireco-table's paper rows, for installed users too


def test_installed_wheel_trains_from_another_folder(wheel: Path, tmp_path: Path, bireco_cache: str) -> None:
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    _sh([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)])
    # the dependencies come from the test environment's site-packages (a path only: its .pth files, among them
    # the editable install of this checkout, are not processed, so bireco can only come from the wheel)
    site = Path(_sh([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _sh([str(py), "-c", "import bireco.conf; print(bireco.conf.CONF_DIR)"], cwd=work).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    env = {**os.environ, "BIRECO_CACHE": bireco_cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    _sh([str(venv / "bin" / "bireco-train"), "pipeline=baseline", "hydra.run.dir=run", *FAST], cwd=work, env=env)
    assert (work / "run" / "results.json").is_file()
    assert (work / "run" / "stages" / "0-contrastive" / "stage_done.json").is_file()
