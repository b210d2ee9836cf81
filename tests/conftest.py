"""Shared fixtures: CPU, small sizes, fixed seeds; real images from ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
