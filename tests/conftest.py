"""Shared fixtures: CPU, small sizes, fixed seeds; real images from ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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


# ----------------------------------------------------------------------------- decoding fixtures
# Shared by test_decode, test_decode_controls, test_tiling, test_video, test_backends, test_app
# and test_generator: one tiny generator release, its fp32 and bf16 decoders, a photo file and
# a video, built once per session.

TINY_G_CHANNELS = (32, 16, 8)  # a G fast enough for 64 px tests, with the paper's layer layout


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny convolutions gain nothing from a second thread, and on a shared busy CPU OpenMP
    barriers make them ~10x slower. The session's setting comes back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise_bn(G: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``G`` in eval mode with non-trivial BatchNorm running statistics and shifts, so that
    eval-mode BN and its folding into the convolutions are really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in G.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return G.eval()


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory) -> Path:
    """A released generator file: random 32-16-8 channel G (seed 0) with randomised BN."""
    from mgan.generator import Generator, GeneratorConfig, save_release

    torch.manual_seed(0)
    G = randomise_bn(Generator(GeneratorConfig(channels=TINY_G_CHANNELS)))
    return save_release(G, tmp_path_factory.mktemp("tiny-g") / "tiny.safetensors")


@pytest.fixture(scope="session")
def fp32_decoder(tiny_release):
    """The untiled fp32 :class:`mgan.decode.Decoder` of :func:`tiny_release` (do not modify it: copy)."""
    from mgan.decode import Decoder

    return Decoder(tiny_release, device="cpu", precision="fp32", tile=None)


@pytest.fixture(scope="session")
def bf16_decoder(tiny_release):
    """The untiled bf16 :class:`mgan.decode.Decoder` of :func:`tiny_release`."""
    from mgan.decode import Decoder

    return Decoder(tiny_release, device="cpu", precision="bf16", tile=None)


@pytest.fixture
def photo_file(tmp_path) -> Path:
    """A smooth 64x48 photo (:func:`smooth_image` seed 1) saved as ``tmp_path/photo.png``."""
    from mgan import io

    return io.save_image(smooth_image(1, 48, 64), tmp_path / "photo.png")


def read_png(path: Path) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def write_video(path: Path, frames: int = 6, w: int = 64, h: int = 48, fps: int = 12, codec: str | None = None) -> Path:
    """A clip of a bright bar moving 8 px per frame over a dark ground (H.264 where the
    FFmpeg build has it, else MPEG-4; ``codec`` forces one)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4"), rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            a = np.full((h, w, 3), 60, np.uint8)
            a[:, i * 8 : i * 8 + 12] = 230
            c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        c.mux(s.encode(None))
    return path


def empty_video(path: Path, side: int = 32) -> Path:
    """A video written by PyAV with a stream set up but not one frame (an .mp4 then holds no
    track at all; an .avi keeps an empty one)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = side, side, "yuv420p"
        c.start_encoding()
        c.mux(s.encode(None))
    return path


def video_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video file as ``[H, W, 3]`` uint8 RGB."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    """Six 64x48 frames of a moving bar at 12 fps (:func:`write_video`)."""
    return write_video(tmp_path_factory.mktemp("video") / "tiny.mp4")


def load_docs_script(name: str):
    """Import ``docs/<name>.py`` (a script, not a package module) as a module for its tests."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "docs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
