"""Feed-forward decoding (mgan.decode): BN folding, tiling, tileable output, CLI round trips, errors."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mgan import decode, noise
from mgan.generator import Generator, GeneratorConfig, save_release
from mgan.precision import native_bf16
from mgan.vgg import LAYER_INDEX

SMALL = GeneratorConfig(channels=(32, 16, 8))
# Without bf16 units (AVX2-only CPUs) oneDNN emulates bf16 through fp32, 4-44x slower:
# tests that run bf16 on purpose use smaller images there.
NATIVE_BF16 = native_bf16("cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tiles gain nothing from a second thread, and on a shared busy CPU OpenMP
    barriers make them ~10x slower; restore the session's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_bn(G: Generator, seed: int = 0) -> Generator:
    """Non-trivial running statistics, so BN folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in G.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return G.eval()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_release(_randomise_bn(Generator(SMALL)), tmp_path_factory.mktemp("g") / "g.safetensors")


@pytest.fixture(scope="module")
def fp32(model_path) -> decode.Decoder:
    return decode.Decoder(model_path, device="cpu", precision="fp32", tile=None)


@pytest.fixture(scope="module")
def bf16(model_path) -> decode.Decoder:
    return decode.Decoder(model_path, device="cpu", precision="bf16", tile=None)


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> Path:
    """Six 64x48 frames of a moving bar, H.264 or MPEG-4."""
    import av

    path = tmp_path_factory.mktemp("video") / "tiny.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            a = np.full((48, 64, 3), 60, np.uint8)
            a[:, i * 8 : i * 8 + 12] = 230
            c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        c.mux(s.encode(None))
    return path


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _video_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# ----------------------------------------------------------------------------- engine


def test_fold_batchnorm_matches_eval_mode_generator():
    torch.manual_seed(1)
    G = _randomise_bn(Generator(SMALL), seed=3)
    feat = torch.randn(2, 512, 5, 7)
    folded = decode.fold_batchnorm(G.net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded)
    with torch.no_grad():
        torch.testing.assert_close(folded(feat), G(feat), atol=1e-5, rtol=1e-4)


def test_decode_shape_range_determinism(fp32, synthetic_image):
    y = fp32.decode(synthetic_image)
    assert y.shape == synthetic_image.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, fp32.decode(synthetic_image))
    assert y.std() > 1e-3  # not a constant image


def test_decode_any_size_by_padding(fp32):
    x = torch.rand(1, 3, 45, 70, generator=torch.Generator().manual_seed(0))
    y = fp32.decode(x)
    assert y.shape == (1, 3, 45, 70)


def test_axis_spans_cover_the_axis():
    for n, core, wrap in [(200, 64, False), (264, 96, False), (4096, 1024, False), (192, 64, True), (64, None, True)]:
        spans = decode.axis_spans(n, core, decode.HALO, wrap)
        covered = torch.zeros(n, dtype=torch.bool)
        for s in spans:
            assert s.src_len == spans[0].src_len  # one tile shape per axis
            assert s.core_offset >= 0 and s.core_offset + s.core_len <= s.src_len
            assert s.out_start == s.src_start + s.core_offset
            if not wrap:
                assert 0 <= s.src_start and s.src_start + s.src_len <= n
                # the core keeps a full halo wherever the image continues
                assert s.core_offset >= decode.HALO or s.src_start == 0
                assert s.src_len - s.core_offset - s.core_len >= decode.HALO or s.src_start + s.src_len == n
            covered[s.out_start : s.out_start + s.core_len] = True
        assert covered.all()


@pytest.mark.parametrize(("precision", "tol"), [("fp32", 1e-5), ("bf16", 1e-2)])
def test_tiled_equals_untiled(model_path, precision, tol, fp32, bf16):
    # 4 x 5 tiles; where bf16 is emulated 3 x 3, the fewest with an interior tile (the 48 px
    # halo needs a side > 64 + 2 * 48), half the pixels
    x = noise.perlin(*((200, 264) if NATIVE_BF16 or precision == "fp32" else (168, 176)), seed=1, scale=32.0)
    ref = (fp32 if precision == "fp32" else bf16).decode(x)
    tiled = decode.Decoder(model_path, device="cpu", precision=precision, tile=64)
    rows, cols = tiled.plan(*x.shape[-2:])
    assert len(rows) > 2 and len(cols) > 2
    diff = (tiled.decode(x) - ref).abs().max().item()
    assert diff <= tol, diff


def test_auto_tiling_follows_memory_budget(model_path, fp32):
    dec = decode.Decoder(model_path, device="cpu", precision="fp32", tile="auto", tile_memory_mb=30)
    rows, cols = dec.plan(256, 256)
    assert len(rows) * len(cols) > 1
    assert decode.Decoder(model_path, device="cpu", precision="fp32").plan(256, 256) == (
        decode.axis_spans(256, None), decode.axis_spans(256, None))
    x = noise.brown(256, 256, seed=2)
    assert (dec.decode(x) - fp32.decode(x)).abs().max() <= 1e-5


def test_halo_covers_the_receptive_field_exactly(fp32, monkeypatch):
    """HALO is the smallest halo that reproduces the untiled decode: 8 px less is visibly wrong."""
    x = noise.perlin(176, 176, seed=4, scale=32.0)
    ref = fp32.decode(x)
    dec = copy.copy(fp32)
    dec.tile = 48
    assert (dec.decode(x) - ref).abs().max() <= 1e-5
    short = decode.HALO - 8
    monkeypatch.setattr(dec, "plan", lambda h, w, t=False: (decode.axis_spans(h, 48, short), decode.axis_spans(w, 48, short)))
    assert (dec.decode(x) - ref).abs().max() > 1e-3


class _CircularConvT(nn.Module):
    """ConvTranspose2d(k, s, p) with circular padding: wrap the input by one cell, crop s more."""

    def __init__(self, m: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.m = copy.deepcopy(m)
        self.m.padding = (m.padding[0] + m.stride[0], m.padding[1] + m.stride[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(nn.functional.pad(x, (1, 1, 1, 1), mode="circular"))


def _circular_reference(dec: decode.Decoder, x: torch.Tensor) -> torch.Tensor:
    """Plain reference: every conv of VGG and G with padding_mode='circular', untiled."""
    enc = dec.pipeline.encoder
    feats = copy.deepcopy(enc.features)[: LAYER_INDEX["relu4_1"] + 1]
    for m in feats:
        if isinstance(m, nn.Conv2d):
            m.padding_mode = "circular"
    g = copy.deepcopy(dec.pipeline.g_net)
    for i, m in enumerate(g):
        if isinstance(m, nn.ConvTranspose2d):
            g[i] = _CircularConvT(m)
        elif isinstance(m, nn.Conv2d):
            m.padding_mode = "circular"
    with torch.no_grad():
        return (g(feats(enc.preprocess(x))) + 1) / 2


@pytest.mark.parametrize("tile", [None, 64])
def test_tileable_equals_circular_padding_and_wraps(model_path, fp32, tile):
    x = noise.perlin(128, 160, seed=7, scale=32.0, tileable=True)
    dec = decode.Decoder(model_path, device="cpu", precision="fp32", tile=tile)
    y = dec.decode(x, tileable=True)
    assert (y - _circular_reference(fp32, x)).abs().max() <= 1e-4
    rx, ry = noise.edge_continuity(y)
    assert rx < 1.5 and ry < 1.5, (rx, ry)
    # shifting the input by whole relu4_1 cells shifts the output: no border anywhere
    shifted = dec.decode(torch.roll(x, (40, -24), (2, 3)), tileable=True)
    assert (shifted - torch.roll(y, (40, -24), (2, 3))).abs().max() <= 1e-4


def test_plain_and_tileable_decodes_differ_only_near_the_border(fp32):
    """Zero padding vs wrap-around changes only the outer HALO px; the interior is the same decode."""
    x = noise.perlin(128, 160, seed=7, scale=32.0, tileable=True)
    plain, wrapped = fp32.decode(x), fp32.decode(x, tileable=True)
    h = decode.HALO
    assert (plain - wrapped)[..., h:-h, h:-h].abs().max() <= 1e-5
    assert (plain - wrapped)[..., :8, :].abs().mean() > 1e-3


def test_bf16_close_to_fp32(fp32, bf16, synthetic_image):
    diff = (bf16.decode(synthetic_image) - fp32.decode(synthetic_image)).abs()
    assert diff.mean() < 0.02, diff.mean()


def test_decoder_accepts_a_generator_and_rejects_bad_input(fp32):
    torch.manual_seed(0)
    G = Generator(SMALL).eval()
    dec = decode.Decoder(G, device="cpu", precision="fp32", tile=None)
    assert dec.decode(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(decode.io.InputError, match="RGB"):
        dec.decode(torch.rand(3, 16, 16))
    with pytest.raises(decode.io.InputError, match="too small"):
        dec.decode(torch.rand(1, 3, 4, 16))
    with pytest.raises(decode.io.InputError, match="multiples of 8"):
        dec.decode(torch.rand(1, 3, 20, 16), tileable=True)
    with pytest.raises(decode.io.InputError, match="precision"):
        decode.Decoder(G, precision="fp16")
    with pytest.raises(decode.io.InputError, match="tile"):
        decode.Decoder(G, tile=3)


def test_missing_default_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "DEFAULT_MODEL", tmp_path / "assets" / "picasso.safetensors")
    with pytest.raises(decode.io.InputError, match="bundled generator"):
        decode.Decoder(tmp_path / "assets" / "picasso.safetensors")


# ----------------------------------------------------------------------------- CLI


def test_cli_noise_is_deterministic_by_seed(model_path, tmp_path):
    args = ["--model", str(model_path), "--noise", "perlin", "--size", "64x48", "--precision", "fp32", "--quiet"]
    assert decode.main([*args, "--seed", "5", "--out", str(tmp_path / "a.png"), "--save-noise", str(tmp_path / "n.png")]) == 0
    assert decode.main([*args, "--seed", "5", "--out", str(tmp_path / "b.png")]) == 0
    assert decode.main([*args, "--seed", "6", "--out", str(tmp_path / "c.png")]) == 0
    a, b, c = (_png(tmp_path / f"{k}.png") for k in "abc")
    assert a.shape == (48, 64, 3) and _size(tmp_path / "n.png") == (64, 48)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_cli_tileable_brown_noise_wraps(model_path, tmp_path):
    out = tmp_path / "tile.png"
    assert decode.main(["--model", str(model_path), "--noise", "brown", "--size", "96", "--tileable",
                        "--tile", "48", "--quiet", "--out", str(out)]) == 0
    y = torch.from_numpy(_png(out)).permute(2, 0, 1).unsqueeze(0).float()
    rx, ry = noise.edge_continuity(y)
    assert rx < 1.5 and ry < 1.5, (rx, ry)


def test_cli_folder_round_trip(model_path, tmp_path, synthetic_image):
    src = tmp_path / "in"
    src.mkdir()
    decode.io.save_image(synthetic_image, src / "a.png")
    Image.fromarray(np.full((30, 41), 128, np.uint8), "L").save(src / "b.jpg")
    decode.io.save_image(synthetic_image[..., :40, :56], src / "b.png")  # same stem as b.jpg
    out = tmp_path / "out"
    assert decode.main(["--model", str(model_path), "--input", str(src), "--out", str(out),
                        "--noise-weight", "0.3", "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a.png", "b_jpg.png", "b_png.png"]
    assert _size(out / "a.png") == (64, 64)
    assert _size(out / "b_jpg.png") == (41, 30)
    assert _size(out / "b_png.png") == (56, 40)


def test_cli_noise_weight_changes_the_output(model_path, tmp_path, synthetic_image):
    photo = tmp_path / "p.png"
    decode.io.save_image(synthetic_image, photo)
    outs = []
    for w in ("0", "0.5", "1"):
        out = tmp_path / f"w{w}.png"
        assert decode.main(["--model", str(model_path), "--input", str(photo), "--noise-weight", w,
                            "--precision", "fp32", "--out", str(out), "--quiet"]) == 0
        outs.append(_png(out).astype(float))
    assert np.abs(outs[0] - outs[1]).mean() > 1 and np.abs(outs[1] - outs[2]).mean() > 1


def test_cli_video_round_trip(model_path, tmp_path, tiny_video, capsys):
    out = tmp_path / "out.mp4"
    assert decode.main(["--model", str(model_path), "--input", str(tiny_video), "--out", str(out),
                        "--noise-weight", "0.2", "--quiet"]) == 0
    frames = _video_frames(out)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert "frames/s" in capsys.readouterr().out
    resized = tmp_path / "small.mkv"
    assert decode.main(["--model", str(model_path), "--input", str(tiny_video), "--out", str(resized),
                        "--size", "32", "--quiet"]) == 0
    assert _video_frames(resized)[0].shape == (24, 32, 3)


def test_cli_video_without_frames(model_path, tmp_path, capsys):
    import av

    empty = tmp_path / "empty.avi"
    with av.open(str(empty), "w", format="avi") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    assert decode.main(["--model", str(model_path), "--input", str(empty), "--out", str(out), "--quiet"]) == 2
    assert "no frames" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [empty]  # no output, no temp file left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --input"),
        (["--noise", "perlin", "--size", "10x"], "--size"),
        (["--noise", "perlin", "--size", "100", "--tileable"], "multiples of 8"),
        (["--noise", "perlin", "--noise-weight", "2"], "--noise-weight"),
        (["--noise", "perlin", "--out", "{tmp}/x.txt"], "image file"),
        (["--noise", "perlin", "--tile", "zero"], "--tile"),
        (["--input", "{tmp}/missing.png"], "not found"),
        (["--input", "{tmp}/empty_dir"], "no images"),
        (["--input", "{tmp}/broken.png", "--out", "{tmp}/o.png"], "not an image"),
        (["--input", "{tmp}/broken.mp4", "--out", "{tmp}/o.mp4"], "cannot open video"),
        (["--input", "{tmp}/img.png", "--out", "{tmp}/o.mp3"], "image file"),
        (["--noise", "perlin", "--model", "{tmp}/none.safetensors"], "not found"),
        (["--noise", "perlin", "--model", "{tmp}/broken.png"], "safetensors"),
    ],
)
def test_cli_bad_input_exits_2(model_path, tmp_path, capsys, argv, message, synthetic_image):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 256)
    decode.io.save_image(synthetic_image, tmp_path / "img.png")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--model" not in argv:
        argv = ["--model", str(model_path), *argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o.png")]
    assert decode.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_dry_run_decodes_nothing(model_path, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert decode.main(["--model", str(model_path), "--noise", "brown", "--out", str(out), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out and not out.exists()


def test_cli_real_photo(shared_data, model_path, tmp_path):
    photo = sorted((shared_data / "photo").iterdir())[0]
    out = tmp_path / "p.png"
    assert decode.main(["--model", str(model_path), "--input", str(photo), "--size", "96", "--out", str(out),
                        "--quiet"]) == 0
    assert max(_size(out)) == 96


@pytest.mark.slow
def test_4096_tiled_decode_in_bounded_memory(tmp_path):
    """The issue's target: a 4096^2 decode (full-width G) with peak RSS <= 2 GB, in a fresh process."""
    model = save_release(Generator(), tmp_path / "g.safetensors")
    code = (
        "import resource, sys; from mgan import decode; "
        f"rc = decode.main(['--model', r'{model}', '--noise', 'brown', '--size', '4096', '--quiet', "
        f"'--out', r'{tmp_path / 'big.png'}']); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr
    peak_mb = int(res.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mb <= 2048, peak_mb
    assert _size(tmp_path / "big.png") == (4096, 4096)


@pytest.mark.slow
def test_compiled_decoder_matches_eager(model_path, request, synthetic_image):
    """--compile (Inductor with freezing) gives the eager decode up to bf16 rounding (fp32 where bf16 is emulated)."""
    precision = "bf16" if NATIVE_BF16 else "fp32"
    compiled = decode.Decoder(model_path, device="cpu", precision=precision, tile=None, compile=True)
    diff = (compiled.decode(synthetic_image) - request.getfixturevalue(precision).decode(synthetic_image)).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.2, (diff.mean(), diff.max())
