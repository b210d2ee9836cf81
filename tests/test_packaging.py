"""The wheel works outside the checkout: it holds the bundled assets, the `mgan` command and optional extras.

The wheel is built from a copy of the package files (setup.cfg, pyproject.toml, README.md,
mgan/) in a temporary folder, so the test writes nothing into the checkout; it needs no
torch install and takes a few seconds. The slow test installs it into a fresh virtual
environment (sharing this interpreter's torch) and decodes and runs MDAN from a folder
outside the checkout with the bundled defaults.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "mgan" / "assets"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (the build backend)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "mgan", src / "mgan", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # no build isolation: the installed setuptools builds it, so no index is needed
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp.glob("mgan-*.whl")
    return path


def _metadata(whl: zipfile.ZipFile, name: str) -> str:
    (info,) = [n for n in whl.namelist() if n.endswith(f".dist-info/{name}")]
    return whl.read(info).decode()


def test_wheel_holds_every_bundled_asset(wheel):
    bundled = sorted(p for p in ASSETS.iterdir() if p.suffix in (".png", ".safetensors"))
    assert {p.name for p in bundled} >= {"default_style.png", "picasso.safetensors"}
    with zipfile.ZipFile(wheel) as whl:
        sizes = {info.filename: info.file_size for info in whl.infolist()}
    for p in bundled:
        assert sizes.get(f"mgan/assets/{p.name}") == p.stat().st_size, p.name
    assert "mgan/assets/__init__.py" in sizes and "mgan/__main__.py" in sizes
    assert not any(n.startswith(("assets/", "tests/", "bench/")) for n in sizes)  # only the package


def test_wheel_has_the_mgan_command_and_the_old_scripts(wheel):
    with zipfile.ZipFile(wheel) as whl:
        scripts = _metadata(whl, "entry_points.txt")
    assert "mgan = mgan.__main__:main" in scripts
    for name in ("mgan-mdan", "mgan-train", "mgan-app"):
        assert f"{name} = " in scripts


def test_optional_packages_are_extras_and_torch_is_not_patch_capped(wheel):
    with zipfile.ZipFile(wheel) as whl:
        meta = email.message_from_string(_metadata(whl, "METADATA"))
    requires = meta.get_all("Requires-Dist")
    always = [r for r in requires if "extra ==" not in r]
    for optional in ("av", "wandb", "noise", "gradio"):
        assert not any(r.split(";")[0].strip().startswith(optional) for r in always), optional
    assert {"video", "wandb", "noise", "dev", "app"} <= set(meta.get_all("Provides-Extra"))
    torch_req = next(r for r in always if r.startswith("torch") and not r.startswith("torchvision"))
    assert "<" not in torch_req and ">=" in torch_req


@pytest.mark.slow
def test_installed_wheel_runs_with_its_bundled_defaults_outside_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)  # torch comes from here
    python = env_dir / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    work = tmp_path / "work"  # not the checkout: only the installed package can provide the defaults
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)

    where = run("-c", "import mgan, mgan.decode as d, mgan.mdan as m; "
                      "print(mgan.__file__); assert d.DEFAULT_MODEL.is_file() and m.DEFAULT_STYLE.is_file()")
    assert where.returncode == 0, where.stderr
    assert str(env_dir) in where.stdout and str(ROOT) not in where.stdout
    from PIL import Image

    Image.new("RGB", (48, 40), (120, 90, 60)).save(work / "photo.png")
    decoded = run("-m", "mgan", "decode", "--input", "photo.png", "--out", "out.png", "--device", "cpu")
    assert decoded.returncode == 0, decoded.stderr[-2000:]
    with Image.open(work / "out.png") as out:
        assert out.size == (48, 40)
    mdan = run("-m", "mgan", "mdan", "--size", "64", "--iterations", "2", "--out", "mdan.png", "--device", "cpu")
    assert mdan.returncode == 0, mdan.stderr[-2000:]
    with Image.open(work / "mdan.png") as out:
        assert out.size == (64, 64)
