"""Exact halo tiling (mgan.tiling): spans cover the axis, the tile loop against a plain untiled
network, and the decoder's tiled = untiled (mgan.decode's Decoder), wrap-around = circular padding."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import randomise_bn
from torch import nn

from mgan import colour, decode, noise, tiling
from mgan.generator import Generator, GeneratorConfig, save_release
from mgan.precision import native_bf16
from mgan.vgg import LAYER_INDEX

NATIVE_BF16 = native_bf16("cpu")  # emulated bf16 is 4-44x slower: smaller images there

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- spans and the tile loop


def test_axis_spans_cover_the_axis():
    for n, core, wrap in [(200, 64, False), (264, 96, False), (4096, 1024, False), (192, 64, True), (64, None, True)]:
        spans = tiling.axis_spans(n, core, tiling.HALO, wrap)
        covered = torch.zeros(n, dtype=torch.bool)
        for s in spans:
            assert s.src_len == spans[0].src_len  # one tile shape per axis
            assert s.core_offset >= 0 and s.core_offset + s.core_len <= s.src_len
            assert s.out_start == s.src_start + s.core_offset
            if not wrap:
                assert 0 <= s.src_start and s.src_start + s.src_len <= n
                # the core keeps a full halo wherever the image continues
                assert s.core_offset >= tiling.HALO or s.src_start == 0
                assert s.src_len - s.core_offset - s.core_len >= tiling.HALO or s.src_start + s.src_len == n
            covered[s.out_start : s.out_start + s.core_len] = True
        assert covered.all()


def test_take_is_a_window_of_the_periodic_axis():
    x = torch.arange(10.0).view(1, 1, 1, 10)
    assert torch.equal(tiling.take(x, 3, 2, 5), x[..., 2:7])  # inside: a plain view
    ref = torch.tensor([(i % 10) for i in range(-3, 9)], dtype=torch.float32)
    assert torch.equal(tiling.take(x, 3, -3, 12).flatten(), ref)  # both ends wrap


def _local_net(radius: int, padding_mode: str = "zeros") -> nn.Module:
    """``radius`` 3x3 convs (receptive-field radius ``radius`` px) with a ReLU between."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(radius):
        layers += [nn.Conv2d(3 if i == 0 else 4, 4 if i < radius - 1 else 2, 3, padding=1, padding_mode=padding_mode)]
        layers += [nn.ReLU()] if i < radius - 1 else []
    return nn.Sequential(*layers).eval().requires_grad_(False)


@pytest.mark.parametrize("wrap", [False, True])
def test_run_tiled_equals_the_untiled_network(wrap):
    """A plain conv stack of radius 6 on a 3 x 4 grid of tiles (interior tiles included): a halo
    of 6 gives the untiled output (zero padding; circular padding with ``wrap``), a halo of 5 does not."""
    net = _local_net(6, "circular" if wrap else "zeros")
    x = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x)
        for halo, exact in ((6, True), (5, False)):
            rows, cols = tiling.axis_spans(70, 24, halo, wrap), tiling.axis_spans(90, 24, halo, wrap)
            assert len(rows) == 3 and len(cols) == 4
            y = tiling.run_tiled(net, x, rows, cols)
            assert y.shape == (2, 2, 70, 90)  # the channels are fn's, not the input's
            assert ((y - ref).abs().max() <= 1e-5) == exact, (halo, (y - ref).abs().max())


# ----------------------------------------------------------------------------- the decoder's tiles


@pytest.mark.parametrize(("precision", "tol"), [("fp32", 1e-5), ("bf16", 1e-2)])
def test_tiled_equals_untiled(tiny_release, precision, tol):
    # 4 x 5 tiles; where bf16 is emulated 3 x 3, the fewest with an interior tile (the 48 px
    # halo needs a side > 64 + 2 * 48), half the pixels. Without the border margin, so that the
    # image planned is the image decoded (the margin's tiles: test_decode.py)
    x = noise.perlin(*((200, 264) if NATIVE_BF16 or precision == "fp32" else (168, 176)), seed=1, scale=32.0)
    ref = decode.Decoder(tiny_release, device="cpu", precision=precision, tile=None, margin=0).decode(x)
    tiled = decode.Decoder(tiny_release, device="cpu", precision=precision, tile=64, margin=0)
    rows, cols = tiled.plan(*x.shape[-2:])
    assert len(rows) > 2 and len(cols) > 2
    diff = (tiled.decode(x) - ref).abs().max().item()
    assert diff <= tol, diff


def test_halo_covers_the_receptive_field_exactly(fp32_decoder, monkeypatch):
    """HALO is the smallest halo that reproduces the untiled decode: 8 px less is visibly wrong."""
    x = noise.perlin(176, 176, seed=4, scale=32.0)
    ref = fp32_decoder.decode(x)
    dec = copy.copy(fp32_decoder)
    dec.tile = 48
    assert (dec.decode(x) - ref).abs().max() <= 1e-5
    short = tiling.HALO - 8
    monkeypatch.setattr(dec, "plan", lambda h, w, t=False: (tiling.axis_spans(h, 48, short), tiling.axis_spans(w, 48, short)))
    assert (dec.decode(x) - ref).abs().max() > 1e-3


def test_tiled_equals_untiled_for_a_random_resize_generator(tmp_path):
    """The exactness argument holds for resize-convolution: the halo covers its receptive field."""
    torch.manual_seed(0)
    path = save_release(randomise_bn(Generator(GeneratorConfig(channels=(32, 16, 8), upsample="resize"))),
                        tmp_path / "g.safetensors")
    x = noise.perlin(200, 264, seed=1, scale=32.0)
    untiled = decode.Decoder(path, device="cpu", precision="fp32", tile=None)
    tiled = decode.Decoder(path, device="cpu", precision="fp32", tile=64)
    assert tiled.halo == tiling.HALO
    rows, cols = tiled.plan(200, 264)
    assert len(rows) > 2 and len(cols) > 2
    ref = untiled.decode(x)
    assert (tiled.decode(x) - ref).abs().max() <= 1e-5
    # and the halo is needed: 8 px less is visibly wrong
    short = tiled.halo - 8
    tiled.plan = lambda h, w, t=False: (tiling.axis_spans(h, 64, short), tiling.axis_spans(w, 64, short))
    assert (tiled.decode(x) - ref).abs().max() > 1e-3


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
def test_tileable_equals_circular_padding_and_wraps(tiny_release, fp32_decoder, tile):
    x = noise.perlin(128, 160, seed=7, scale=32.0, tileable=True)
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=tile, postprocess="none")
    y = dec.decode(x, tileable=True)
    assert (y - _circular_reference(dec, x)).abs().max() <= 1e-4
    rx, ry = noise.edge_continuity(y)
    assert rx < 1.5 and ry < 1.5, (rx, ry)
    # shifting the input by whole relu4_1 cells shifts the output: no border anywhere
    shifted = dec.decode(torch.roll(x, (40, -24), (2, 3)), tileable=True)
    assert (shifted - torch.roll(y, (40, -24), (2, 3))).abs().max() <= 1e-4
    # the default contrast stretch is one pointwise map of the whole output: it still wraps
    dec.postprocess = "stretch"
    s = dec.decode(x, tileable=True)
    torch.testing.assert_close(s, colour.stretch(y), atol=1e-5, rtol=0)
    rx, ry = noise.edge_continuity(s)
    assert rx < 1.5 and ry < 1.5, (rx, ry)


def test_plain_and_tileable_decodes_differ_only_near_the_border(tiny_release):
    """Zero padding vs wrap-around changes only the outer HALO px; the interior is the same decode.
    With G's running BatchNorm statistics: per-image ones also differ by the border's share.
    Zero padding is the decode without the border margin (``margin=0``)."""
    x = noise.perlin(128, 160, seed=7, scale=32.0, tileable=True)
    dec = decode.Decoder(tiny_release, device="cpu", precision="fp32", tile=None, bn_stats="running",
                         postprocess="none", margin=0)
    plain, wrapped = dec.decode(x), dec.decode(x, tileable=True)
    h = tiling.HALO
    assert (plain - wrapped)[..., h:-h, h:-h].abs().max() <= 1e-5
    assert (plain - wrapped)[..., :8, :].abs().mean() > 1e-3
