"""Neural patch grid, extraction and gradient blending against plain references."""

import pytest
import torch

from mgan import patches


def reference_patches(feat, size, stride):
    """Plain loop: every grid patch, border row/column included, row-major per image."""
    n, c, h, w = feat.shape
    rows = list(range(0, h - size + 1, stride))
    cols = list(range(0, w - size + 1, stride))
    if rows[-1] != h - size:
        rows.append(h - size)
    if cols[-1] != w - size:
        cols.append(w - size)
    out = [feat[i, :, r : r + size, q : q + size] for i in range(n) for r in rows for q in cols]
    return torch.stack(out)


@pytest.mark.parametrize("shape,size,stride", [((2, 3, 10, 14), 4, 4), ((1, 5, 16, 16), 8, 4), ((1, 2, 9, 9), 3, 2), ((1, 1, 8, 8), 8, 4)])
def test_extract_matches_reference(shape, size, stride):
    feat = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(patches.extract_patches(feat, size, stride), reference_patches(feat, size, stride))


@pytest.mark.parametrize("shape,size,stride", [((2, 3, 10, 14), 4, 4), ((1, 5, 16, 19), 8, 4), ((1, 2, 9, 9), 3, 1)])
def test_extract_gradient_sums_overlapping_patches_like_the_reference(shape, size, stride):
    # MDAN's image step backpropagates through extraction: overlapping patches' gradients must add up
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(reference_patches(feat, size, stride).shape, generator=g, dtype=torch.float64)
    got, = torch.autograd.grad((patches.extract_patches(feat, size, stride) * weights).sum(), feat)
    want, = torch.autograd.grad((reference_patches(feat, size, stride) * weights).sum(), feat)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_grid_positions_include_border():
    assert patches.grid_positions(10, 4, 4) == [0, 4, 6]
    assert patches.grid_positions(16, 8, 4) == [0, 4, 8]
    assert patches.grid_positions(8, 8, 4) == [0]
    with pytest.raises(ValueError, match="smaller than the patch"):
        patches.grid_positions(5, 8, 4)


def test_coverage_counts_overlaps():
    cov = patches.coverage(16, 16, 8, 4)
    # corners covered once, the 4x4 centre block by all four... nine patches: 3x3 grid
    assert cov[0, 0] == 1 and cov[0, 4] == 2 and cov[4, 4] == 4 and cov[8, 8] == 4
    assert cov.min() >= 1


def test_blend_gradients_averages_overlapping_patch_gradients():
    """With every patch sending gradient g_p, each position receives the mean of its patches' g_p."""
    feat = torch.randn(1, 2, 12, 12, requires_grad=True)
    size, stride = 8, 4
    blended = patches.blend_gradients(feat, size, stride)
    torch.testing.assert_close(blended, feat)  # identity forward
    p = patches.extract_patches(blended, size, stride)
    weights = torch.arange(1.0, p.shape[0] + 1).view(-1, 1, 1, 1)  # patch k sends gradient k everywhere
    (p * weights).sum().backward()
    # Reference: mean of the indices of the patches covering each position.
    ref = torch.zeros(12, 12)
    cnt = torch.zeros(12, 12)
    k = 1
    for r in patches.grid_positions(12, size, stride):
        for q in patches.grid_positions(12, size, stride):
            ref[r : r + size, q : q + size] += k
            cnt[r : r + size, q : q + size] += 1
            k += 1
    torch.testing.assert_close(feat.grad[0, 0], ref / cnt)
    torch.testing.assert_close(feat.grad[0, 1], ref / cnt)


def test_sample_patches_shape_and_determinism():
    pool = [torch.randn(1, 4, 12, 10), torch.randn(1, 4, 9, 20)]
    a = patches.sample_patches(pool, 50, 8, generator=torch.Generator().manual_seed(1))
    b = patches.sample_patches(pool, 50, 8, generator=torch.Generator().manual_seed(1))
    assert a.shape == (50, 4, 8, 8)
    torch.testing.assert_close(a, b)
    # every sampled patch really occurs in the pool
    ref = torch.cat([patches.extract_patches(f, 8, 1) for f in pool])
    dists = torch.cdist(a.flatten(1), ref.flatten(1), compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert dists.max() < 1e-5
