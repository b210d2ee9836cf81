"""Shared fixtures: CPU, small sizes, fixed seeds; real images from ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """A session cache folder ($MGAN_CACHE_DIR, inherited by CLI subprocesses): decode's
    backend exports and auto's measurements (mgan.backends) never land in the user's ~/.cache."""
    before = os.environ.get("MGAN_CACHE_DIR")
    os.environ["MGAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("mgan-cache"))
    yield
    if before is None:
        os.environ.pop("MGAN_CACHE_DIR", None)
    else:
        os.environ["MGAN_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (override with MGAN_SHARED_DATA); tests needing it skip when absent."""
    if not (SHARED / "photo").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def encoder():
    """One fp32 VGG-19 encoder (relu1_1..relu5_1 taps) shared by the whole session."""
    from mgan.vgg import VGG19Encoder

    return VGG19Encoder(("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), precision="fp32")


@pytest.fixture
def synthetic_image() -> torch.Tensor:
    """A smooth, structured 64x64 RGB image in [0, 1] (no shared data needed): ``[1, 3, 64, 64]``."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    base = torch.stack([torch.sin(6 * xx + 2 * yy), torch.cos(5 * yy - 3 * xx), torch.sin(9 * xx * yy)])
    img = 0.5 + 0.35 * base + 0.05 * torch.rand(3, 64, 64, generator=g)
    return img.clamp(0, 1).unsqueeze(0)


def smooth_image(seed: int, h: int = 64, w: int = 64) -> torch.Tensor:
    """A smooth random-frequency pattern ``[1, 3, h, w]`` in [0, 1], different per ``seed``."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(6, generator=g) * 8 + 2
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([torch.sin(f[0] * xx + f[1] * yy), torch.cos(f[2] * yy - f[3] * xx), torch.sin(f[4] * xx * yy)])
    return (0.5 + 0.4 * base).clamp(0, 1).unsqueeze(0)


def make_tiny_experiment(root: Path, n_train: int = 3, **train) -> Path:
    """A data folder (style, 1 warm-up, ``n_train`` training and 2 sample photos, 64 px) and
    a tiny fp32 MGAN config ``root/experiments/tiny.yaml`` (its ``data_root`` "data" is
    relative to ``root``); ``train`` overrides the ``train:`` section. Returns the config path."""
    from mgan import io

    data = root / "data"
    io.save_image(smooth_image(100), data / "style" / "style.png")
    io.save_image(smooth_image(50), data / "initial" / "w0.png")
    for i in range(n_train):
        io.save_image(smooth_image(i), data / "train" / f"p{i}.png")
    io.save_image(smooth_image(77, 64, 80), data / "test" / "t0.png")
    io.save_image(smooth_image(78, 48, 64), data / "test" / "t1.png")
    cfg = {
        "name": "tiny", "data_root": "data", "style": "style/style.png", "warmup_photos": "initial",
        "train_photos": "train", "sample_photos": "test", "sample_count": 2, "sample_size": 64,
        "warmup_iterations": 2,
        "mdan": {"size": 64, "style_size": 64, "iterations": 2, "precision": "fp32", "angles": [0.0],
                 "scales": [1.0], "flip": False, "d_hidden": 16},
        "crops": {"size": 32, "stride": 16, "angles": [0.0, 10.0], "scales": [1.0], "flip": True},
        "model": {"channels": [16, 8, 8]},
        "train": {"batch": 8, "precision": "fp32", "d_hidden": [8, 8], "log_every": 1, "sample_every": 2,
                  "checkpoint_every": 2, "snapshot_every": 0, "max_steps": 4, **train},
    }
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    path = root / "experiments" / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
