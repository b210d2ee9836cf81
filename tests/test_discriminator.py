"""Patch discriminator and generator shapes; patch-wise vs map-wise scoring; the MGAN discriminator
(score map, ignored ring, a plain functional reference)."""

import pytest
import torch
import torch.nn.functional as F

from mgan import patches
from mgan.discriminator import MGANDiscriminator, PatchDiscriminator
from mgan.generator import Generator, GeneratorConfig


@pytest.mark.parametrize("h,w", [(8, 8), (16, 16), (24, 40), (96, 72)])
def test_score_map_shape(h, w):
    D = PatchDiscriminator(16, 8, patch=8, stride=4)
    s = D(torch.randn(2, 16, h, w))
    assert s.shape == (2, 1, (h - 8) // 4 + 1, (w - 8) // 4 + 1)


def test_one_score_per_patch_and_border_patches():
    D = PatchDiscriminator(16, 8, patch=8, stride=4)
    feat = torch.randn(1, 16, 14, 18)  # neither side aligned with the stride
    n_grid = len(patches.grid_positions(14, 8, 4)) * len(patches.grid_positions(18, 8, 4))
    assert D.score_map(feat).shape == (1, n_grid)
    assert D(patches.extract_patches(feat, 8, 4)).shape == (n_grid, 1, 1, 1)


def test_map_scores_equal_patch_scores_when_conv_sees_no_border():
    """With a 1x1 hidden conv there is no padding effect, so sliding over the map equals scoring patches."""
    D = PatchDiscriminator(6, 5, patch=4, stride=2).eval()
    D.net[1] = torch.nn.Conv2d(6, 5, 1, bias=False)
    feat = torch.randn(1, 6, 10, 12)
    a = D.score_map(feat).flatten()
    b = D(patches.extract_patches(feat, 4, 2)).flatten()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_small_map_rejected():
    with pytest.raises(ValueError, match="smaller than"):
        PatchDiscriminator(4, 4)(torch.randn(1, 4, 6, 10))


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (16, 16)])
def test_generator_any_size(h, w):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(channels=(32, 16, 8)))
    with torch.no_grad():
        y = G(torch.randn(2, 512, h, w))
    assert y.shape == (2, 3, 8 * h, 8 * w)
    # (a Tanh range check could not fail) DCGAN's init keeps the final Tanh far from saturation,
    # where its gradient vanishes (measured max |y| 0.27-0.44 over seeds 0-2), and G uses its input
    assert y.abs().max() < 0.9 and (y[0] - y[1]).abs().mean() > 1e-3


# --------------------------------------------------------------------------- MGAN discriminator


@pytest.mark.parametrize("h,w,out", [(32, 32, (8, 8)), (25, 19, (6, 4)), (4, 4, (1, 1)), (33, 70, (8, 17))])
def test_mgan_d_shapes_and_ring(h, w, out):
    D = MGANDiscriminator(16, (8, 12), ring=1)
    s = D(torch.randn(2, 16, h, w))
    assert s.shape == (2, 1, *out)
    kept = (out[0] - 2) * (out[1] - 2) if min(out) > 2 else out[0] * out[1]
    assert D.masked(s).shape == (2, kept)


def test_mgan_d_paper_size_keeps_36_scores():
    D = MGANDiscriminator()  # relu3_1 of a 128x128 crop
    assert D.masked(D(torch.randn(2, 256, 32, 32))).shape == (2, 36)
    with pytest.raises(ValueError, match="too small"):
        D(torch.randn(1, 256, 3, 8))


def test_mgan_d_matches_plain_reference():
    """LReLU -> conv4x4/2 -> BN -> LReLU -> conv4x4/2 -> BN -> LReLU -> conv1x1, written with torch.nn.functional."""
    torch.manual_seed(0)
    D = MGANDiscriminator(6, (5, 7)).train()
    x = torch.randn(3, 6, 12, 10)
    net = D.net
    h = F.leaky_relu(x, 0.2)
    h = F.conv2d(h, net[1].weight, stride=2, padding=1)
    h = F.batch_norm(h, None, None, net[2].weight, net[2].bias, training=True)
    h = F.leaky_relu(h, 0.2)
    h = F.conv2d(h, net[4].weight, stride=2, padding=1)
    h = F.batch_norm(h, None, None, net[5].weight, net[5].bias, training=True)
    ref = F.conv2d(F.leaky_relu(h, 0.2), net[7].weight)
    torch.testing.assert_close(D(x), ref, rtol=1e-5, atol=1e-5)
