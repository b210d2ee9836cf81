"""Decoding through OpenVINO / ONNX Runtime (mgan.backends): same pixels as torch, cache, auto's choice, errors."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import write_video
from torch import nn

from mgan import backends, decode, io, noise, video

TOL = 1 / 255  # the issue's bar: a backend gives torch fp32's pixels up to one 8-bit level
FAST = [pytest.param(b, marks=pytest.mark.skipif(not backends.installed(b), reason=f"{b} not installed"))
        for b in backends.FAST]

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- same pixels as torch


@pytest.mark.parametrize("backend", FAST)
def test_tiled_and_tileable_decodes_match_torch(tiny_release, backend):
    # The exported nets hold one G: the running BatchNorm statistics (decode.py's docstring)
    # (margin=0: the image planned is the image decoded)
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=64, backend=backend, bn_stats="running",
                         margin=0)
    fp32_decoder = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, bn_stats="running",
                                  margin=0)
    x = noise.perlin(168, 176, seed=1, scale=32.0)
    rows, cols = dec.plan(*x.shape[-2:])
    assert len(rows) > 2 and len(cols) > 2  # interior tiles: halos on every side
    y = dec.decode(x)
    assert dec.dispatch.chosen == backend
    assert (y - fp32_decoder.decode(x)).abs().max().item() <= TOL
    t = noise.perlin(128, 160, seed=7, scale=32.0, tileable=True)
    assert (dec.decode(t, tileable=True) - fp32_decoder.decode(t, tileable=True)).abs().max().item() <= TOL
    # the export lives in the user's cache folder (here the session's), never in the package
    exported = list(backends.cache_root().glob("*/decode.onnx"))
    assert exported and not any(decode.__file__.rsplit("/", 2)[0] in str(p) for p in exported)


@pytest.mark.parametrize("backend", FAST)
def test_a_generator_with_residual_blocks_matches_torch(tmp_path, backend):
    """The bundled picasso has residual blocks (GeneratorConfig.blocks): their BatchNorms fold
    into the exported net as G's others do, and the tiles' halo covers their reach."""
    from conftest import TINY_G_CHANNELS, randomise_bn

    from mgan.generator import Generator, GeneratorConfig, ResidualBlock, save_release

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(channels=TINY_G_CHANNELS, blocks=2, block_width=8))
    for m in G.modules():  # blocks start as the identity (zero last BN scale): make them act, as trained
        if isinstance(m, ResidualBlock):
            m.branch[-1].weight.data.uniform_(0.5, 1.5)
    path = save_release(randomise_bn(G), tmp_path / "blocks.safetensors")
    kw = dict(device="cpu", precision="fp32", bn_stats="running", margin=0)
    dec = decode.Decoder(path, tile=64, backend=backend, **kw)
    x = noise.perlin(256, 264, seed=1, scale=32.0)
    assert len(dec.plan(*x.shape[-2:])[0]) > 2, dec.plan(*x.shape[-2:])  # interior tiles: halos on every side
    y = dec.decode(x)
    assert dec.dispatch.chosen == backend
    assert (y - decode.Decoder(path, tile=None, **kw).decode(x)).abs().max().item() <= TOL


@pytest.mark.parametrize("backend", FAST)
def test_video_frames_match_torch(tiny_release, tmp_path, monkeypatch, backend):
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    frames: dict[str, list[torch.Tensor]] = {}
    write = video.VideoWriter.write

    def record(self, frame, pts=None):  # the decoded float frames, before the lossy encoder
        frames.setdefault(self.path.stem, []).append(frame.clone())
        write(self, frame, pts)

    monkeypatch.setattr(video.VideoWriter, "write", record)
    for name in ("torch", backend):
        assert decode.main(["--model", str(tiny_release), "--input", str(clip), "--out", str(tmp_path / f"{name}.mp4"),
                            "--precision", "fp32", "--backend", name, "--bn-stats", "running", "--quiet"]) == 0
    assert len(frames["torch"]) == len(frames[backend]) == 3
    for a, b in zip(frames["torch"], frames[backend], strict=True):
        assert (a - b).abs().max().item() <= TOL


@pytest.mark.parametrize("backend", FAST)
def test_export_once_per_model(tiny_release, monkeypatch, backend):
    """A second decoder of the same model, at another tile shape, reuses the cached export."""
    first = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, backend=backend,
                           bn_stats="running")
    first.decode(torch.rand(1, 3, 40, 48))
    monkeypatch.setattr(backends, "export_onnx", lambda *a: pytest.fail("exported twice"))
    again = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, backend=backend,
                           bn_stats="running")
    assert again.decode(torch.rand(1, 3, 56, 32)).shape == (1, 3, 56, 32)


# ----------------------------------------------------------------------------- auto


def _fake_dispatch(monkeypatch, precision: str, seconds: dict[str, float]) -> backends.Dispatch:
    """A Dispatch whose backends are stand-ins taking ``seconds`` each (all installed)."""
    monkeypatch.setattr(backends, "installed", lambda name: True)
    monkeypatch.setattr(backends.Dispatch, "_make", lambda self, b, shape: (functools.partial(_identity, b), b))
    monkeypatch.setattr(backends, "time_runner",
                        lambda run, shape, fmt: seconds[getattr(run, "args", ("torch",))[0]])
    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 3)
    return backends.Dispatch("auto", functools.partial(_identity, "torch"), lambda: net, precision)


def _identity(backend: str, x: torch.Tensor) -> torch.Tensor:
    return x


def test_auto_picks_the_measured_fastest_once(monkeypatch):
    d = _fake_dispatch(monkeypatch, "fp32", {"torch": 1.8, "openvino": 0.9, "onnxruntime": 1.84})
    d(torch.zeros(1, 3, 512, 512))
    assert d.chosen == "openvino"
    assert "openvino" in (backends.cache_root() / "choices.json").read_text()
    # measured once: another decoder (another run) of this model reads the cached measurement
    d2 = _fake_dispatch(monkeypatch, "fp32", {})
    d2(torch.zeros(1, 3, 500, 520))  # same size class (512^2)
    assert d2.chosen == "openvino"


def test_auto_keeps_torch_within_the_margin_and_for_small_tiles(monkeypatch):
    # as where bf16 is native: torch bf16 vs openvino bf16 about even -> torch
    d = _fake_dispatch(monkeypatch, "bf16", {"torch": 1.0, "openvino": 0.95, "onnxruntime": 2.0})
    d(torch.zeros(1, 3, 256, 256))
    assert d.chosen == "torch"
    # a CPU without native bf16 resolves --precision auto to fp32: measured apart, its own choice
    d = _fake_dispatch(monkeypatch, "fp32", {"torch": 1.8, "openvino": 2.0, "onnxruntime": 1.2})
    d(torch.zeros(1, 3, 256, 256))
    assert d.chosen == "onnxruntime"
    # small tiles: torch without measuring (an export costs more than it could save)
    d = _fake_dispatch(monkeypatch, "fp32", {})
    d(torch.zeros(1, 3, 128, 200))
    assert d.chosen == "torch"


def test_auto_is_torch_without_the_packages(tiny_release, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backends, "installed", lambda name: name == "torch")
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, backend="auto", bn_stats="running")
    assert dec.backend == "torch" and dec.dispatch is None
    assert decode.main(["--model", str(tiny_release), "--noise", "perlin", "--size", "32", "--bn-stats", "running",
                        "--out", str(tmp_path / "t.png")]) == 0
    assert "backend: torch (auto: openvino and onnxruntime are not installed" in capsys.readouterr().err


def test_per_image_bn_statistics_keep_torch(tiny_release, tmp_path, monkeypatch, capsys):
    """The default per-image BatchNorm statistics change G per image; an export holds one G:
    auto keeps torch and says why, an explicit backend is one error line."""
    monkeypatch.setattr(backends, "installed", lambda name: True)
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, backend="auto")
    assert dec.bn_stats == "image" and dec.backend == "torch" and dec.dispatch is None
    assert "bn-stats image" in dec.backend_reason
    rc = decode.main(["--model", str(tiny_release), "--noise", "perlin", "--size", "32", "--backend", "openvino",
                      "--out", str(tmp_path / "t.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "--bn-stats running" in err, err


def test_openvino_precision_hint():
    """--precision auto's choice carries over: bf16 hint only where OpenVINO has native bf16."""
    assert backends.openvino_hint("fp32", ["BF16", "FP32"])[0] == "f32"
    assert backends.openvino_hint("bf16", ["BF16", "FP32"])[0] == "bf16"
    assert backends.openvino_hint("bf16", ["FP32"])[0] == "f32"


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("backend", backends.FAST)
def test_explicit_backend_not_installed_is_one_error_line(tiny_release, tmp_path, monkeypatch, capsys, backend):
    monkeypatch.setattr(backends, "installed", lambda name: name == "torch")
    rc = decode.main(["--model", str(tiny_release), "--noise", "perlin", "--size", "32", "--backend", backend,
                      "--out", str(tmp_path / "t.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert f"--backend {backend} needs the {backend} package" in err and not (tmp_path / "t.png").exists()


def test_explicit_backend_on_gpu_or_with_compile_is_refused(monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda name: True)
    with pytest.raises(io.InputError, match="runs on the CPU"):
        backends.check("openvino", torch.device("cuda"))
    with pytest.raises(io.InputError, match="--compile"):
        backends.check("onnxruntime", torch.device("cpu"), compile=True)
    assert backends.check("auto", torch.device("cuda"))[0] == "torch"
    assert backends.check("auto", torch.device("cpu"), compile=True)[0] == "torch"
