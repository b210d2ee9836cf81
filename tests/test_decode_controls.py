"""Decode-time controls (mgan.controls, python -m mgan.decode --strength/--preserve-colors/--mask):
each control's property against a plain reference, tiled = untiled with controls, and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_png
from PIL import Image

from mgan import controls, decode, io

pytestmark = pytest.mark.usefixtures("one_thread")


def _png(path: Path) -> np.ndarray:
    return read_png(path).astype(np.int16)  # differences of 8-bit levels can be negative


def _random_pair(seed: int = 0, h: int = 24, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


# ----------------------------------------------------------------------------- the controls


def test_default_controls_change_nothing():
    styled, photo = _random_pair()
    before = styled.clone()
    assert not controls.Controls().active
    assert torch.equal(controls.apply(styled, photo, controls.Controls()), before)
    assert torch.equal(controls.apply(styled, None, controls.Controls()), before)


def test_strength_is_the_output_mix_and_zero_gives_the_photo():
    styled, photo = _random_pair()
    for a in (0.0, 0.3, 1.0):
        y = controls.apply(styled.clone(), photo, controls.Controls(strength=a))
        torch.testing.assert_close(y, a * styled + (1 - a) * photo, atol=1e-6, rtol=0)
    assert torch.equal(controls.apply(styled.clone(), photo, controls.Controls(strength=0.0)), photo)
    y = controls.apply(styled.clone(), photo, controls.Controls(strength=1.0, mask=torch.ones(1, 1, 4, 4)))
    torch.testing.assert_close(y, styled, atol=1e-6, rtol=0)  # a resized all-white mask: 1 up to rounding


def test_content_distance_falls_monotonically_as_strength_falls(fp32_decoder, encoder, synthetic_image):
    """The relu4_1 content distance of mgan.evaluate, ||Phi(y) - Phi(p)||^2 / ||Phi(p)||^2."""
    photo = synthetic_image
    styled = fp32_decoder.decode(photo)
    with torch.no_grad():
        ref = encoder(photo, ["relu4_1"])["relu4_1"]
        dist = []
        for a in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = controls.apply(styled.clone(), photo, controls.Controls(strength=a))
            f = encoder(y, ["relu4_1"])["relu4_1"]
            dist.append(float((f - ref).pow(2).sum() / ref.pow(2).sum()))
    assert dist[0] == 0.0
    assert all(x < y for x, y in zip(dist[:-1], dist[1:], strict=True)), dist


def test_preserve_colors_keeps_the_photos_chroma_and_the_outputs_luma():
    # mid-range values, so that no pixel is clamped: the swap is then exact
    styled, photo = _random_pair(1)
    styled, photo = 0.4 + 0.2 * styled, 0.35 + 0.3 * photo  # luma offsets <= 0.25: nothing leaves [0, 1]
    y = controls.apply(styled.clone(), photo, controls.Controls(preserve_colors=True))
    yiq, ref_yiq, styled_yiq = (controls.rgb_to_yiq(x) for x in (y, photo, styled))
    torch.testing.assert_close(yiq[:, 1:], ref_yiq[:, 1:], atol=1e-5, rtol=0)  # photo's I, Q
    torch.testing.assert_close(yiq[:, :1], styled_yiq[:, :1], atol=1e-5, rtol=0)  # output's Y
    # against the plain recipe of Gatys et al. 2016: convert, swap Y, convert back
    plain = controls.yiq_to_rgb(torch.cat([styled_yiq[:, :1], ref_yiq[:, 1:]], 1))
    torch.testing.assert_close(controls.keep_chroma(styled, photo), plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(controls.yiq_to_rgb(controls.rgb_to_yiq(photo)), photo, atol=1e-5, rtol=0)


def test_preserve_colors_on_full_range_images_stays_in_range():
    styled, photo = _random_pair(2)
    y = controls.apply(styled.clone(), photo, controls.Controls(preserve_colors=True))
    assert y.min() >= 0 and y.max() <= 1
    chroma_err = (controls.rgb_to_yiq(y)[:, 1:] - controls.rgb_to_yiq(photo)[:, 1:]).abs()
    before = (controls.rgb_to_yiq(styled)[:, 1:] - controls.rgb_to_yiq(photo)[:, 1:]).abs()
    assert chroma_err.mean() < 0.2 * before.mean()  # only clamped pixels move


def test_mask_keeps_the_photo_where_black_and_blends_in_between():
    styled, photo = _random_pair(3, 24, 32)
    # a 6x8 mask (4x smaller): left half black, right half white, resized to the output
    mask = torch.zeros(1, 1, 6, 8)
    mask[..., 4:] = 1
    y = controls.apply(styled.clone(), photo, controls.Controls(mask=mask))
    assert torch.equal(y[..., :14], photo[..., :14])  # away from the resized edge: the photo exactly
    torch.testing.assert_close(y[..., 18:], styled[..., 18:], atol=1e-6, rtol=0)
    m = controls.resize_mask(mask, 24, 32)
    assert 0 < m[0, 0, 0, 15] < 1 and 0 < m[0, 0, 0, 16] < 1  # soft edge
    torch.testing.assert_close(y, photo + m * (styled - photo), atol=1e-6, rtol=0)


def test_controls_run_in_bands_like_at_once(monkeypatch):
    styled, photo = _random_pair(4, 40, 16)
    c = controls.Controls(strength=0.6, preserve_colors=True, mask=torch.rand(1, 1, 7, 5))
    whole = controls.apply(styled.clone(), photo, c)
    monkeypatch.setattr(controls, "BAND_ROWS", 7)
    assert torch.equal(controls.apply(styled.clone(), photo, c), whole)


def test_load_mask_modes(tmp_path):
    Image.fromarray(np.array([[0, 255], [128, 64]], np.uint8), "L").save(tmp_path / "l.png")
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3], rgba[0, 0, 3], rgba[1, 1, 3] = 255, 255, 0  # white; opaque, partly transparent, transparent
    rgba[0, 1, 3] = rgba[1, 0, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "i16.png")
    m = controls.load_mask(tmp_path / "l.png")
    assert m.shape == (1, 1, 2, 2) and m.dtype == torch.float32
    torch.testing.assert_close(m[0, 0], torch.tensor([[0, 1], [128 / 255, 64 / 255]]), atol=1e-6, rtol=0)
    a = controls.load_mask(tmp_path / "a.png")[0, 0]
    assert a[0, 0] == 1 and a[1, 1] == 0 and 0.4 < a[0, 1] < 0.6  # transparent keeps the photo
    torch.testing.assert_close(controls.load_mask(tmp_path / "i16.png")[0, 0], torch.tensor([[0.0, 1.0]]))


def test_bad_controls_raise_input_errors(tmp_path):
    with pytest.raises(io.InputError, match="--strength"):
        controls.Controls(strength=1.5)
    with pytest.raises(io.InputError, match="--strength"):
        controls.Controls(strength=float("nan"))
    with pytest.raises(io.InputError, match="need a photo"):
        controls.apply(torch.rand(1, 3, 8, 8), None, controls.Controls(strength=0.5))
    (tmp_path / "m.png").write_bytes(b"not a png")
    with pytest.raises(io.InputError, match="not an image"):
        controls.load_mask(tmp_path / "m.png")


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def gradient_mask(tmp_path) -> Path:
    path = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1)), "L").save(path)  # another size
    return path


def _decode(model: Path, *argv: str) -> int:
    return decode.main(["--model", str(model), "--precision", "fp32", "--quiet", *map(str, argv)])


def test_cli_strength_zero_returns_the_photo(tiny_release, photo_file, tmp_path):
    out = tmp_path / "o.png"
    assert _decode(tiny_release, "--input", photo_file, "--strength", "0", "--noise-weight", "0.5", "--out", out) == 0
    assert np.abs(_png(out) - _png(photo_file)).max() <= 1


def test_cli_mask_keeps_the_photo_where_black(tiny_release, photo_file, gradient_mask, tmp_path):
    out, full = tmp_path / "o.png", tmp_path / "full.png"
    assert _decode(tiny_release, "--input", photo_file, "--mask", gradient_mask, "--out", out) == 0
    assert _decode(tiny_release, "--input", photo_file, "--out", full) == 0
    y, p, s = _png(out), _png(photo_file), _png(full)
    assert np.abs(y[:, 0] - p[:, 0]).max() <= 1  # black column: the photo
    assert np.abs(y[:, -1] - s[:, -1]).max() <= 1  # white column: the stylised output
    left, right = np.abs(y - p)[:, :32].mean(), np.abs(y - p)[:, 32:].mean()
    assert left < right


@pytest.mark.parametrize("flags", [["--strength", "0.6"], ["--preserve-colors"], ["--mask", "{mask}"],
                                   ["--strength", "0.7", "--preserve-colors", "--mask", "{mask}"]])
def test_cli_tiled_equals_untiled_with_controls(tiny_release, photo_file, gradient_mask, tmp_path, flags):
    flags = [f.replace("{mask}", str(gradient_mask)) for f in flags]
    a, b = tmp_path / "tiled.png", tmp_path / "whole.png"
    assert _decode(tiny_release, "--input", photo_file, *flags, "--tile", "16", "--out", a) == 0
    assert _decode(tiny_release, "--input", photo_file, *flags, "--tile", "off", "--out", b) == 0
    assert np.abs(_png(a) - _png(b)).max() <= 1  # fp32 tiles: float rounding of other conv shapes only


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--noise", "perlin", "--strength", "0.5"], "--strength mix the output with a photo"),
        (["--noise", "perlin", "--mask", "{mask}", "--preserve-colors"], "--preserve-colors, --mask"),
        (["--input", "{photo}", "--strength", "2"], "--strength must be in [0, 1]"),
        (["--input", "{photo}", "--mask", "{tmp}/missing.png"], "image not found"),
        (["--input", "{photo}", "--mask", "{tmp}/broken.png"], "not an image"),
        (["--input", "{photo}", "--mask", "{tmp}"], "folder"),
    ],
)
def test_cli_bad_controls_exit_2_with_one_line(tiny_release, photo_file, gradient_mask, tmp_path, capsys, argv,
                                               message):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    argv = [a.replace("{mask}", str(gradient_mask)).replace("{photo}", str(photo_file)).replace("{tmp}", str(tmp_path))
            for a in argv]
    out = tmp_path / "o.png"
    assert _decode(tiny_release, *argv, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()
