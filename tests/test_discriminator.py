"""Patch discriminator and generator shapes; patch-wise vs map-wise scoring."""

import pytest
import torch

from mgan import patches
from mgan.discriminator import PatchDiscriminator
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
    G = Generator(GeneratorConfig(channels=(32, 16, 8)))
    y = G(torch.randn(2, 512, h, w))
    assert y.shape == (2, 3, 8 * h, 8 * w)
    assert y.min() >= -1 and y.max() <= 1
