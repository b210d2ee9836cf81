"""Feed-forward decoding (mgan.decode): BN folding, the decode against a plain reference, tile
planning, CLI round trips, errors. Tiling itself: test_tiling.py; video files: test_video.py."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import empty_video, image_size, randomise_bn, read_png, smooth_image, video_frames
from PIL import Image
from torch import nn

from mgan import colour, decode, io, noise, tiling
from mgan.generator import Generator, GeneratorConfig, load_release, save_release
from mgan.precision import native_bf16

SMALL = GeneratorConfig(channels=(32, 16, 8))
# Without bf16 units (AVX2-only CPUs) oneDNN emulates bf16 through fp32, 4-44x slower:
# tests that run bf16 on purpose use smaller images there.
NATIVE_BF16 = native_bf16("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- engine


@pytest.mark.parametrize("blocks", [0, 2])
def test_fold_batchnorm_matches_eval_mode_generator(blocks):
    """Every BN folded away, the residual blocks' too, and G in eval mode unchanged."""
    torch.manual_seed(1)
    G = randomise_bn(Generator(dataclasses.replace(SMALL, blocks=blocks)), seed=3)
    for m in G.modules():  # as trained: the blocks are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
    feat = torch.randn(2, 512, 5, 7)
    folded = decode.fold_batchnorm(G.net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(feat), G(feat), atol=1e-5, rtol=1e-4)


def test_decode_matches_plain_reference_and_is_deterministic(fp32_decoder, tiny_release, encoder, synthetic_image):
    """``(G(VGG relu4_1(x)) + 1) / 2`` written out with G's own (unfolded) BatchNorm: in train
    mode on each image alone for the default per-image statistics (the original's test-time
    mode), in eval mode for ``bn_stats="running"``; ``postprocess="none"`` gives it as it is,
    the default (``"minmax"`` for a G that carries no painting colours) its range stretched
    to ``[0, 1]``. Image by image either way: the other image of the batch
    changes nothing. All without the border margin (``margin=0``: the plain decode; the
    margin has its own test)."""
    x = torch.cat([synthetic_image, smooth_image(3)])
    raw = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, postprocess="none", margin=0)
    y = raw.decode(x)
    G, _ = load_release(tiny_release)
    with torch.no_grad():
        feat = encoder(x)["relu4_1"]
        ref_running = (G.eval()(feat) + 1) / 2
        for m in G.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.0  # train mode, buffers untouched
        ref_image = torch.cat([(G.train()(feat[i : i + 1]) + 1) / 2 for i in range(2)])
    assert fp32_decoder.bn_stats == "image" and fp32_decoder.margin == decode.MARGIN
    assert y.shape == x.shape and torch.isfinite(y).all()
    torch.testing.assert_close(y, ref_image, atol=1e-4, rtol=0)
    assert (y - ref_running).abs().max() > 1e-2  # the two modes differ: the test can tell them apart
    assert torch.equal(y[1:], raw.decode(x[1:]))  # the other image changes nothing
    assert torch.equal(y, raw.decode(x))
    assert y.std() > 1e-3  # not a constant image
    plain = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, margin=0)
    stretched = plain.decode(x)
    assert plain.postprocess == "minmax"
    torch.testing.assert_close(stretched, colour.minmax(y), atol=1e-6, rtol=0)
    assert torch.equal(stretched[1:], plain.decode(x[1:]))
    running = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, bn_stats="running",
                             postprocess="none", margin=0)
    torch.testing.assert_close(running.decode(x), ref_running, atol=1e-4, rtol=0)


def test_image_statistics_come_from_a_downscaled_copy_above_stats_side(tiny_release):
    """Above ``stats_side`` the statistics are measured on the image scaled to that side, so a
    tiled decode (which never sees the whole image at once) equals the untiled one, and the
    statistics are those of the scaled image's own untiled decode."""
    x = noise.perlin(200, 264, seed=5, scale=32.0)
    untiled = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, stats_side=112, margin=0)
    tiled = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=64, stats_side=112, margin=0)
    assert len(tiled.plan(200, 264)[0]) > 2
    y = untiled.decode(x)
    assert (tiled.decode(x) - y).abs().max() <= 1e-5
    bns = [m for m in untiled.pipeline.g_net if isinstance(m, nn.BatchNorm2d)]
    held = [m.running_mean.clone() for m in bns]
    small = nn.functional.interpolate(x, size=(80, 112), mode="bilinear", antialias=True, align_corners=False)
    other = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, margin=0)
    other.decode(small.clamp(0, 1))
    for a, m in zip(held, [m for m in other.pipeline.g_net if isinstance(m, nn.BatchNorm2d)], strict=True):
        torch.testing.assert_close(a, m.running_mean, atol=1e-5, rtol=1e-5)
    with pytest.raises(io.InputError, match="stats_side"):
        decode.Decoder(tiny_release, stats_side=8)
    with pytest.raises(io.InputError, match="bn_stats"):
        decode.Decoder(tiny_release, bn_stats="batch")


def test_decode_any_size_by_padding(tiny_release):
    """Without the margin (``margin=0``, whose own test is below)."""
    x = torch.rand(1, 3, 45, 70, generator=torch.Generator().manual_seed(0))
    raw = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, postprocess="none", margin=0)
    y = raw.decode(x)
    assert y.shape == (1, 3, 45, 70)
    # edge replication up to 48x72, then cropped: the same as decoding the padded image
    padded = nn.functional.pad(x, (0, 2, 0, 3), mode="replicate")
    assert torch.equal(y, raw.decode(padded)[..., :45, :70])
    # the post-process sees the cropped image only: its statistics are the output's own
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, margin=0)
    torch.testing.assert_close(dec.decode(x), colour.minmax(y), atol=1e-6, rtol=0)


def test_margin_decodes_inside_the_images_reflection(tiny_release):
    """With a margin ``m`` the image is decoded inside ``m`` px of its own reflection and
    cropped back: G's BatchNorm statistics are the image's own cells' (the margin left out),
    tiles still equal the untiled decode, and odd sizes and images narrower than the margin
    work (the margin is cut to fit)."""
    x = noise.perlin(136, 168, seed=4, scale=24.0)
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, postprocess="none", margin=16)
    y = dec.decode(x)
    plain = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, postprocess="none", margin=0)
    xp = nn.functional.pad(x, (16, 16, 16, 16), mode="reflect")
    with torch.no_grad():
        feat = plain.pipeline.features(xp)
        ref = plain.pipeline.to_unit(decode.set_bn_stats(plain.pipeline.g_net, feat, through=True, border=2))
    assert y.shape == x.shape
    torch.testing.assert_close(y, ref[..., 16:152, 16:184], atol=1e-5, rtol=0)
    assert (y - plain.decode(x)).abs().max() > 1e-2  # the margin changes the decode: the test can tell
    tiled = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=32, postprocess="none", margin=16)
    assert len(tiled.plan(168, 200)[0]) > 2
    assert (tiled.decode(x) - y).abs().max() <= 1e-5
    assert decode.Decoder(tiny_release, margin=9).margin == 16  # whole 8 px feature cells
    # a side narrower than the margin: cut to 8 px (a reflection needs fewer px than the side),
    # then edge replication up to 32x48, decoded and cropped back to the image
    odd = torch.rand(1, 3, 13, 30, generator=torch.Generator().manual_seed(1))
    op = nn.functional.pad(nn.functional.pad(odd, (8, 8, 8, 8), mode="reflect"), (0, 2, 0, 3), mode="replicate")
    with torch.no_grad():
        feat = plain.pipeline.features(op)
        ref = plain.pipeline.to_unit(decode.set_bn_stats(plain.pipeline.g_net, feat, through=True, border=1))
    for d in (dec, tiled):
        torch.testing.assert_close(d.decode(odd), ref[..., 8:21, 8:38], atol=1e-5, rtol=0)
    with pytest.raises(io.InputError, match="margin"):
        decode.Decoder(tiny_release, margin=-8)
    assert dec.decode(torch.rand(0, 3, 40, 56)).shape == (0, 3, 40, 56)  # an empty batch, any post-process
    assert decode.Decoder(tiny_release, device="cpu", precision="fp32").decode(torch.rand(0, 3, 40, 56)).numel() == 0


def test_margin_with_image_statistics_at_and_above_stats_side(tiny_release):
    """``stats_side`` counts the image's own side, not the margin's: up to it the statistics come
    from the decode itself, tiled or not; above it, from the image scaled to ``stats_side``
    inside a reflected margin of its own (left out of the statistics)."""
    x = noise.perlin(128, 160, seed=2, scale=24.0)  # 160 px: under stats_side, decoded at 160x192, over it
    kw = {"device": "cpu", "precision": "fp32", "postprocess": "none", "margin": 16, "stats_side": 168}
    untiled, tiled = decode.Decoder(tiny_release, tile=None, **kw), decode.Decoder(tiny_release, tile=32, **kw)
    assert len(tiled.plan(160, 192)[0]) > 2
    assert (tiled.decode(x) - untiled.decode(x)).abs().max() <= 1e-5
    big = noise.perlin(200, 264, seed=5, scale=32.0)  # above: statistics of a 120x168 copy
    untiled.decode(big)
    small = nn.functional.interpolate(big, size=(120, 168), mode="bilinear", antialias=True, align_corners=False)
    small = nn.functional.pad(small.clamp(0, 1), (16, 16, 16, 16), mode="reflect")
    ref = decode.Decoder(tiny_release, tile=None, **{**kw, "margin": 0})
    with torch.no_grad():
        decode.set_bn_stats(ref.pipeline.g_net, ref.pipeline.features(small), border=2)
    bns = [[m for m in d.pipeline.g_net if isinstance(m, nn.BatchNorm2d)] for d in (untiled, ref)]
    for a, b in zip(*bns, strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.running_var, b.running_var, atol=1e-5, rtol=1e-5)


def test_margin_removes_the_bundled_generators_border_band():
    """The bundled Picasso G paints a grey-green band along the canvas edge when decoded with
    the zero padding of VGG and G (margin 0): the red channel of the outer 8 px of a Perlin
    decode sits well below the interior's (0.48 against 0.64 at 512 px; the release before: 0.56
    against 0.70). With the default margin the band is gone (0.61 against 0.62: within the
    interior's own spread)."""
    x = noise.make_noise("perlin", 512, 512, seed=0, scale=16.0)  # the decoder's Perlin scale when this was measured

    def red_gap(margin: int) -> float:
        y = decode.Decoder(device="cpu", precision="fp32", tile=None, postprocess="none", margin=margin).decode(x)
        red = y[0, 0]
        ring = torch.cat([red[:8].flatten(), red[-8:].flatten(), red[8:-8, :8].flatten(), red[8:-8, -8:].flatten()])
        return float(red[32:-32, 32:-32].mean() - ring.mean())

    before, after = red_gap(0), red_gap(decode.MARGIN)
    assert before > 0.08, before  # the band is there to remove
    assert abs(after) < before / 3, (before, after)


def test_auto_tiling_follows_memory_budget(tiny_release, fp32_decoder):
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile="auto", tile_memory_mb=30)
    rows, cols = dec.plan(256, 256)
    assert len(rows) * len(cols) > 1
    assert decode.Decoder(tiny_release, device="cpu", precision="fp32").plan(256, 256) == (
        tiling.axis_spans(256, None), tiling.axis_spans(256, None))
    x = noise.brown(256, 256, seed=2)
    assert (dec.decode(x) - fp32_decoder.decode(x)).abs().max() <= 1e-5


def test_bf16_close_to_fp32(fp32_decoder, bf16_decoder, synthetic_image):
    diff = (bf16_decoder.decode(synthetic_image) - fp32_decoder.decode(synthetic_image)).abs()
    assert diff.mean() < 0.02, diff.mean()


def test_decoder_accepts_a_generator_and_rejects_bad_input():
    torch.manual_seed(0)
    G = Generator(SMALL).eval()
    dec = decode.Decoder(G, device="cpu", precision="fp32", tile=None)
    assert dec.decode(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(io.InputError, match="RGB"):
        dec.decode(torch.rand(3, 16, 16))
    with pytest.raises(io.InputError, match="too small"):
        dec.decode(torch.rand(1, 3, 4, 16))
    with pytest.raises(io.InputError, match="multiples of 8"):
        dec.decode(torch.rand(1, 3, 20, 16), tileable=True)
    with pytest.raises(io.InputError, match="precision"):
        decode.Decoder(G, precision="fp16")
    with pytest.raises(io.InputError, match="tile"):
        decode.Decoder(G, tile=3)


def test_missing_default_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "DEFAULT_MODEL", tmp_path / "assets" / "picasso.safetensors")
    with pytest.raises(io.InputError, match="bundled generator"):
        decode.Decoder(tmp_path / "assets" / "picasso.safetensors")


def test_postprocess_options(tiny_release, tmp_path):
    """``stretch``, ``minmax`` and ``match`` are those maps of G's own output; a tiled decode
    gets the same statistics as the untiled one (they are measured on the whole output).
    ``auto`` is ``match`` for a release that carries its painting's colours (what mgan.zoo
    colour writes), ``minmax`` otherwise; ``match`` without them is refused."""
    x = noise.perlin(200, 264, seed=2, scale=32.0)
    raw = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, postprocess="none").decode(x)
    mm = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None).decode(x)
    tiled = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=64, postprocess="stretch")
    assert len(tiled.plan(200, 264)[0]) > 1
    torch.testing.assert_close(tiled.decode(x), colour.stretch(raw), atol=1e-4, rtol=0)
    torch.testing.assert_close(mm, colour.minmax(raw), atol=1e-6, rtol=0)
    assert raw.std() < 0.1 < colour.stretch(raw).std()  # the random G's output is low-contrast; stretched it is not
    with pytest.raises(io.InputError, match="postprocess"):
        decode.Decoder(tiny_release, postprocess="clip")
    with pytest.raises(io.InputError, match="painting's colours"):
        decode.Decoder(tiny_release, postprocess="match")
    # a painting: a dark orange-blue gradient; the release learns its colours
    g = torch.linspace(0, 1, 64)
    painting = torch.stack([0.2 + 0.6 * g, 0.1 + 0.3 * g, 0.5 - 0.4 * g]).view(3, 1, 64).expand(3, 48, 64)[None]
    io.save_image(painting.contiguous(), tmp_path / "painting.png")
    from mgan import zoo

    coloured = zoo.write_style_colour(tiny_release, tmp_path / "painting.png", out=tmp_path / "g.safetensors")
    dec = decode.Decoder(coloured, device="cpu", precision="fp32", tile=64)
    assert dec.postprocess == "match"
    y = dec.decode(x)
    mean, cov = colour.moments(y)
    want_mean, want_cov = colour.moments(io.load_image(tmp_path / "painting.png"))
    torch.testing.assert_close(mean, want_mean, atol=0.02, rtol=0)  # clamping aside, the painting's moments
    torch.testing.assert_close(cov, want_cov, atol=0.005, rtol=0)
    torch.testing.assert_close(y, colour.match(raw, want_mean, want_cov), atol=2e-3, rtol=0)
    assert decode.Decoder(coloured, device="cpu", tile=None, postprocess="none").postprocess == "none"
    # per call: decode(postprocess=...) overrides the decoder's own, which stays
    torch.testing.assert_close(dec.decode(x, postprocess="none"), raw, atol=1e-4, rtol=0)
    assert dec.postprocess == "match"
    with pytest.raises(io.InputError, match="painting's colours"):
        decode.Decoder(tiny_release, device="cpu", tile=None).decode(x, postprocess="match")
    with pytest.raises(io.InputError, match="postprocess"):
        dec.decode(x, postprocess="bogus")


# ----------------------------------------------------------------------------- CLI


def test_cli_noise_uses_the_bundled_models_perlin_scale(tmp_path):
    """``--noise perlin`` with a bundled model feeds G noise at that model's measured scale
    (mgan.noise.decode_scale: 128 px for picasso), and ``--noise-scale`` overrides it."""
    args = ["--style", "picasso", "--noise", "perlin", "--size", "64", "--seed", "2", "--precision", "fp32", "--quiet"]
    assert decode.main([*args, "--out", str(tmp_path / "a.png"), "--save-noise", str(tmp_path / "n.png")]) == 0
    assert decode.main([*args, "--noise-scale", "16", "--out", str(tmp_path / "b.png"),
                        "--save-noise", str(tmp_path / "m.png")]) == 0
    saved = {k: torch.from_numpy(read_png(tmp_path / f"{k}.png")).permute(2, 0, 1)[None].float() / 255 for k in "nm"}
    for key, scale in (("n", 128.0), ("m", 16.0)):
        want = noise.make_noise("perlin", 64, 64, seed=2, scale=scale)
        assert (saved[key] - want).abs().max() <= 1 / 255 + 1e-6, key  # the saved PNG, up to 8-bit rounding
    assert (saved["n"] - saved["m"]).abs().mean() > 0.05  # the two scales are different noise


def test_cli_noise_is_deterministic_by_seed(tiny_release, tmp_path):
    args = ["--model", str(tiny_release), "--noise", "perlin", "--size", "64x48", "--precision", "fp32", "--quiet"]
    assert decode.main([*args, "--seed", "5", "--out", str(tmp_path / "a.png"), "--save-noise", str(tmp_path / "n.png")]) == 0
    assert decode.main([*args, "--seed", "5", "--out", str(tmp_path / "b.png")]) == 0
    assert decode.main([*args, "--seed", "6", "--out", str(tmp_path / "c.png")]) == 0
    a, b, c = (read_png(tmp_path / f"{k}.png") for k in "abc")
    assert a.shape == (48, 64, 3) and image_size(tmp_path / "n.png") == (64, 48)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # --postprocess none: G's output as it is, of lower contrast than the default (minmax here)
    assert decode.main([*args, "--seed", "5", "--postprocess", "none", "--out", str(tmp_path / "d.png")]) == 0
    d = read_png(tmp_path / "d.png")
    assert d.std() < a.std()
    ref = colour.minmax(torch.from_numpy(d).permute(2, 0, 1)[None].float() / 255)
    assert (ref[0].permute(1, 2, 0).numpy() * 255 - a).__abs__().mean() < 8  # the minmax of it (up to 8-bit rounding)


def test_cli_margin_reaches_the_decoder(tiny_release, tmp_path, synthetic_image):
    """``--margin`` is the Decoder's: 0 gives the plain decode, the default the margin's."""
    photo = io.save_image(synthetic_image, tmp_path / "p.png")
    args = ["--model", str(tiny_release), "--input", str(photo), "--precision", "fp32", "--postprocess", "none",
            "--quiet"]
    for margin in ("0", "32"):
        assert decode.main([*args, "--margin", margin, "--out", str(tmp_path / f"m{margin}.png")]) == 0
    for margin in (0, 32):
        ref = decode.Decoder(tiny_release, device="cpu", precision="fp32", postprocess="none", margin=margin)
        want = (ref.decode(synthetic_image)[0].permute(1, 2, 0).numpy() * 255).round()
        assert np.abs(read_png(tmp_path / f"m{margin}.png").astype(np.float64) - want).max() <= 1
    assert not np.array_equal(read_png(tmp_path / "m0.png"), read_png(tmp_path / "m32.png"))


def test_cli_tileable_brown_noise_wraps(tiny_release, tmp_path):
    out = tmp_path / "tile.png"
    assert decode.main(["--model", str(tiny_release), "--noise", "brown", "--size", "96", "--tileable",
                        "--tile", "48", "--quiet", "--out", str(out)]) == 0
    y = torch.from_numpy(read_png(out)).permute(2, 0, 1).unsqueeze(0).float()
    rx, ry = noise.edge_continuity(y)
    assert rx < 1.5 and ry < 1.5, (rx, ry)


def test_cli_folder_round_trip(tiny_release, tmp_path, synthetic_image):
    src = tmp_path / "in"
    src.mkdir()
    io.save_image(synthetic_image, src / "a.png")
    Image.fromarray(np.full((30, 41), 128, np.uint8), "L").save(src / "b.jpg")
    io.save_image(synthetic_image[..., :40, :56], src / "b.png")  # same stem as b.jpg
    out = tmp_path / "out"
    assert decode.main(["--model", str(tiny_release), "--input", str(src), "--out", str(out),
                        "--noise-weight", "0.3", "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a.png", "b_jpg.png", "b_png.png"]
    assert image_size(out / "a.png") == (64, 64)
    assert image_size(out / "b_jpg.png") == (41, 30)
    assert image_size(out / "b_png.png") == (56, 40)


def test_cli_noise_weight_changes_the_output(tiny_release, tmp_path, photo_file):
    outs = []
    for w in ("0", "0.5", "1"):
        out = tmp_path / f"w{w}.png"
        assert decode.main(["--model", str(tiny_release), "--input", str(photo_file), "--noise-weight", w,
                            "--precision", "fp32", "--out", str(out), "--quiet"]) == 0
        outs.append(read_png(out).astype(float))
    assert np.abs(outs[0] - outs[1]).mean() > 1 and np.abs(outs[1] - outs[2]).mean() > 1


def test_cli_video_round_trip(tiny_release, tmp_path, tiny_video, capsys):
    out = tmp_path / "out.mp4"
    assert decode.main(["--model", str(tiny_release), "--input", str(tiny_video), "--out", str(out),
                        "--noise-weight", "0.2", "--quiet"]) == 0
    frames = video_frames(out)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert "frames/s" in capsys.readouterr().out
    resized = tmp_path / "small.mkv"
    assert decode.main(["--model", str(tiny_release), "--input", str(tiny_video), "--out", str(resized),
                        "--size", "32", "--quiet"]) == 0
    assert video_frames(resized)[0].shape == (24, 32, 3)


def test_cli_video_without_frames(tiny_release, tmp_path, capsys):
    empty = empty_video(tmp_path / "empty.avi")
    out = tmp_path / "out.mp4"
    assert decode.main(["--model", str(tiny_release), "--input", str(empty), "--out", str(out), "--quiet"]) == 2
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
        (["--noise", "perlin", "--margin", "-8"], "margin"),
        (["--input", "{tmp}/missing.png"], "not found"),
        (["--input", "{tmp}/empty_dir"], "no images"),
        (["--input", "{tmp}/broken.png", "--out", "{tmp}/o.png"], "not an image"),
        (["--input", "{tmp}/broken.mp4", "--out", "{tmp}/o.mp4"], "cannot open video"),
        (["--input", "{tmp}/img.png", "--out", "{tmp}/o.mp3"], "image file"),
        (["--noise", "perlin", "--model", "{tmp}/none.safetensors"], "not found"),
        (["--noise", "perlin", "--model", "{tmp}/broken.png"], "safetensors"),
        (["--noise", "perlin", "--postprocess", "match"], "painting's colours"),  # a G without them
    ],
)
def test_cli_bad_input_exits_2(tiny_release, tmp_path, capsys, argv, message, synthetic_image):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 256)
    io.save_image(synthetic_image, tmp_path / "img.png")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--model" not in argv:
        argv = ["--model", str(tiny_release), *argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o.png")]
    assert decode.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_dry_run_decodes_nothing(tiny_release, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert decode.main(["--model", str(tiny_release), "--noise", "brown", "--out", str(out), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out and not out.exists()


def test_cli_real_photo(shared_data, tiny_release, tmp_path):
    photo = sorted((shared_data / "photo").iterdir())[0]
    out = tmp_path / "p.png"
    assert decode.main(["--model", str(tiny_release), "--input", str(photo), "--size", "96", "--out", str(out),
                        "--quiet"]) == 0
    assert max(image_size(out)) == 96


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
    assert image_size(tmp_path / "big.png") == (4096, 4096)


@pytest.mark.slow
def test_compiled_decoder_matches_eager(tiny_release, synthetic_image):
    """--compile (Inductor with freezing) gives the eager decode up to bf16 rounding (fp32 where bf16 is emulated)."""
    precision = "bf16" if NATIVE_BF16 else "fp32"
    compiled = decode.Decoder(tiny_release, device="cpu", precision=precision, tile=None, compile=True,
                              bn_stats="running")
    eager = decode.Decoder(tiny_release, device="cpu", precision=precision, tile=None, bn_stats="running")
    diff = (compiled.decode(synthetic_image) - eager.decode(synthetic_image)).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.2, (diff.mean(), diff.max())
    with pytest.raises(io.InputError, match="--bn-stats running"):  # freezing would keep one image's statistics
        decode.Decoder(tiny_release, device="cpu", precision=precision, tile=None, compile=True)


def test_residual_blocks_get_image_statistics_and_exact_tiles(tmp_path):
    """A G with residual blocks (``blocks``): per-image statistics reach the BNs inside the blocks
    (the decode equals G in train mode on the image's features; with the blocks' own running
    statistics, randomised here, it would not), and tiles
    with the halo of its wider receptive field equal the untiled decode."""
    from conftest import TINY_G_CHANNELS

    from mgan.generator import Generator, GeneratorConfig, ResidualBlock, load_release, save_release

    torch.manual_seed(0)
    G = randomise_bn(Generator(GeneratorConfig(channels=TINY_G_CHANNELS, upsample="resize", blocks=1)))
    (block,) = [m for m in G.net if isinstance(m, ResidualBlock)]
    block.branch[-1].weight.data.fill_(0.5)  # as trained: not the identity
    path = save_release(G, tmp_path / "blocks.safetensors", half=False)
    x = noise.perlin(96, 112, seed=3, scale=24.0)
    dec = decode.Decoder(path, device="cpu", precision="fp32", tile=None, postprocess="none", margin=0)
    assert dec.halo == decode.ENCODER_HALO + 8 * (tiling.G_HALO + 2)
    y = dec.decode(x)
    with torch.no_grad():
        ref = dec.pipeline.to_unit(G.train()(dec.pipeline.features(x)))
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)
    running = decode.Decoder(path, device="cpu", precision="fp32", tile=None, postprocess="none", margin=0,
                             bn_stats="running")  # BN folded into G's convs, the blocks' too
    with torch.no_grad():
        saved, _ = load_release(path)  # G as written: the train-mode pass above moved G's running statistics
        ref = running.pipeline.to_unit(saved.eval()(running.pipeline.features(x)))
    torch.testing.assert_close(running.decode(x), ref, atol=1e-4, rtol=0)
    tiled = decode.Decoder(path, device="cpu", precision="fp32", tile=32, postprocess="none", margin=0)
    x = noise.perlin(192, 176, seed=4, scale=24.0)  # tiles need room beside a 64 px halo
    assert len(tiled.plan(192, 176)[0]) > 2
    assert (tiled.decode(x) - dec.decode(x)).abs().max() <= 1e-5
