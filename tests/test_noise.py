"""Perlin and brown noise (mgan.noise): determinism, range, wrap-around, spectrum, reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mgan import noise


def _fade(t: float) -> float:
    return t * t * t * (t * (t * 6 - 15) + 10)


def _perlin_point(x: float, y: float, perm: list[int], px: int, py: int) -> float:
    """Plain scalar improved Perlin noise, the reference for the vectorised octave."""
    grads = [(1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    i, j = math.floor(x), math.floor(y)
    fx, fy = x - i, y - j

    def ramp(ci: int, cj: int, dx: float, dy: float) -> float:
        g = grads[perm[(perm[(ci % px) & 255] + (cj % py)) & 255] & 7]
        return g[0] * dx + g[1] * dy

    u, v = _fade(fx), _fade(fy)
    a = ramp(i, j, fx, fy) + u * (ramp(i + 1, j, fx - 1, fy) - ramp(i, j, fx, fy))
    b = ramp(i, j + 1, fx, fy - 1) + u * (ramp(i + 1, j + 1, fx - 1, fy - 1) - ramp(i, j + 1, fx, fy - 1))
    return a + v * (b - a)


@pytest.mark.parametrize("period", [None, (5, 3)])
def test_perlin_octave_matches_scalar_reference(period):
    rng = np.random.default_rng(0)
    perm = rng.permutation(256)
    xs = np.sort(rng.uniform(0, 12, 17))
    ys = np.sort(rng.uniform(0, 9, 11))
    got = noise.perlin_octave(xs, ys, perm, period)
    px, py = period or (256, 256)
    ref = np.array([[_perlin_point(x, y, perm.tolist(), px, py) for x in xs] for y in ys])
    assert got.shape == (11, 17)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_perlin_octave_is_periodic_and_zero_on_lattice():
    perm = np.random.default_rng(1).permutation(256)
    xs = np.linspace(0, 4, 33)[:-1]
    ys = np.linspace(0, 3, 25)[:-1]
    a = noise.perlin_octave(xs, ys, perm, (4, 3))
    b = noise.perlin_octave(xs + 4, ys + 3, perm, (4, 3))
    np.testing.assert_allclose(a, b, atol=1e-5)
    lattice = noise.perlin_octave(np.arange(5.0), np.arange(4.0), perm, (4, 3))
    assert np.abs(lattice).max() < 1e-6


@pytest.mark.parametrize("kind", ["perlin", "brown"])
def test_same_seed_same_texture(kind):
    a = noise.make_noise(kind, 48, 64, seed=3)
    b = noise.make_noise(kind, 48, 64, seed=3)
    c = noise.make_noise(kind, 48, 64, seed=4)
    assert a.shape == (1, 3, 48, 64)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.05
    # each channel is stretched to exactly the full range, and colour channels differ
    assert torch.allclose(a.amin(dim=(2, 3)), torch.zeros(1, 3)) and torch.allclose(a.amax(dim=(2, 3)), torch.ones(1, 3))
    assert (a[0, 0] - a[0, 1]).abs().mean() > 0.05


def test_noise_package_backend_is_deterministic_and_differs_by_seed():
    a = noise.perlin(16, 24, seed=1, scale=8, backend="noise")
    assert torch.equal(a, noise.perlin(16, 24, seed=1, scale=8, backend="noise"))
    assert not torch.equal(a, noise.perlin(16, 24, seed=2, scale=8, backend="noise"))
    assert torch.allclose(a.amin(dim=(2, 3)), torch.zeros(1, 3)) and torch.allclose(a.amax(dim=(2, 3)), torch.ones(1, 3))


@pytest.mark.parametrize("kind", ["perlin", "brown"])
def test_grey_noise_repeats_one_channel(kind):
    x = noise.make_noise(kind, 32, 40, seed=0, color=False)
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])


@pytest.mark.parametrize(
    ("kind", "options"),
    [("perlin", {"scale": 32.0}), ("perlin", {"scale": 24.0, "backend": "noise", "octaves": 3}), ("brown", {})],
)
def test_tileable_noise_wraps(kind, options):
    x = noise.make_noise(kind, 96, 128, seed=5, tileable=True, **options)
    rx, ry = noise.edge_continuity(x)
    # across the wrap seam the image changes like between any two neighbouring columns/rows
    assert rx < 1.5 and ry < 1.5, (rx, ry)


def test_plain_perlin_does_not_wrap():
    rx, ry = noise.edge_continuity(noise.perlin(96, 128, seed=5, scale=32.0))
    assert rx > 3 and ry > 3, (rx, ry)


def test_brown_noise_has_inverse_square_spectrum():
    x = noise.brown(256, 256, seed=0, scale=1e6, color=False)[0, 0].double()
    power = torch.fft.fft2(x - x.mean()).abs() ** 2
    f = torch.sqrt(torch.fft.fftfreq(256).view(-1, 1) ** 2 + torch.fft.fftfreq(256).view(1, -1) ** 2)
    edges = torch.logspace(math.log10(4 / 256), math.log10(0.4), 9)
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = (f >= lo) & (f < hi)
        centres.append(math.log(float(f[band].mean())))
        means.append(math.log(float(power[band].mean())))
    slope = np.polyfit(centres, means, 1)[0]
    assert -2.4 < slope < -1.6, slope


def test_perlin_is_chunk_independent(monkeypatch):
    """Row chunking (bounded memory) does not change the image."""
    whole = noise.perlin(40, 24, seed=2, scale=16.0)
    monkeypatch.setattr(noise, "_ROWS_PER_CHUNK", 7)
    assert torch.allclose(noise.perlin(40, 24, seed=2, scale=16.0), whole, atol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: noise.perlin(0, 8),
        lambda: noise.perlin(8, 8, octaves=0),
        lambda: noise.perlin(8, 8, persistence=0),
        lambda: noise.perlin(8, 8, scale=-1),
        lambda: noise.perlin(8, 8, backend="numpy"),
        lambda: noise.brown(8, 8, scale=0),
        lambda: noise.make_noise("pink", 8, 8),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_decode_scale_is_the_bundled_models_own_else_the_general_default(tmp_path):
    """Each bundled generator decodes Perlin noise at its measured scale (docs/decoding.md);
    a generator file outside mgan/assets, even one named like a bundled model, and brown
    noise get the general defaults."""
    from mgan.assets import ASSETS

    assert noise.decode_scale("perlin", ASSETS / "picasso.safetensors") == 128.0
    assert noise.decode_scale("perlin", str(ASSETS / "wave.safetensors")) == 32.0
    assert noise.decode_scale("perlin", tmp_path / "picasso.safetensors") == noise.DECODE_SCALE["perlin"] == 64.0
    assert noise.decode_scale("perlin") == 64.0
    assert noise.decode_scale("brown", ASSETS / "picasso.safetensors") == noise.DECODE_SCALE["brown"] == 256.0
    with pytest.raises(ValueError, match="pink"):
        noise.decode_scale("pink")
