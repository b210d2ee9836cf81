"""MRF loss, NCC matching and nearest neighbours vs plain references (SWD, Gram distance: test_metrics)."""

import itertools

import torch

from mgan import losses, patches


def _all_patches_loop(feat: torch.Tensor, size: int, stride: int) -> list[torch.Tensor]:
    """Grid patches by explicit loops over ``grid_positions`` (row-major)."""
    _, _, h, w = feat.shape
    rows, cols = patches.grid_positions(h, size, stride), patches.grid_positions(w, size, stride)
    return [feat[0, :, r : r + size, c : c + size] for r, c in itertools.product(rows, cols)]


def test_match_ncc_equals_brute_force_cosine():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(37, 2, 3, 3, generator=g)
    style = torch.randn(53, 2, 3, 3, generator=g)
    filters = patches.normalize_patches(style)
    idx = patches.match_ncc(q, filters, chunk=7)  # several chunks, one partial
    ref = []
    for p in q:
        scores = [float((p * t).sum() / (p.norm() * t.norm())) for t in style]
        ref.append(max(range(len(scores)), key=scores.__getitem__))
    assert idx.tolist() == ref


def test_match_ncc_is_scale_invariant():
    g = torch.Generator().manual_seed(1)
    style = torch.randn(20, 4, 3, 3, generator=g)
    filters = patches.normalize_patches(style)
    q = style[[3, 11, 17]] * torch.tensor([0.1, 5.0, 300.0]).view(3, 1, 1, 1)
    assert patches.match_ncc(q, filters).tolist() == [3, 11, 17]


def test_nearest_distance_matches_cdist():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(40, 18, generator=g), torch.randn(70, 18, generator=g)
    dist, idx = patches.nearest_distance(q, k, chunk=16)
    ref = torch.cdist(q, k)
    torch.testing.assert_close(dist, ref.min(1).values, rtol=1e-4, atol=1e-4)
    assert idx.tolist() == ref.argmin(1).tolist()


def test_mrf_loss_matches_loop_reference():
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(1, 3, 7, 8, generator=g)
    style = torch.randn(1, 3, 6, 6, generator=g)
    sp = patches.extract_patches(style, 3, 1)
    filters = patches.normalize_patches(sp)
    loss = losses.mrf_loss(feat, filters, sp, size=3, stride=2, blend=False)
    ref = 0.0
    for p in _all_patches_loop(feat, 3, 2):
        cos = torch.stack([(p * t).sum() / (p.norm() * t.norm()) for t in sp])
        ref += 0.5 * (p - sp[int(cos.argmax())]).pow(2).sum()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)


def test_mrf_blended_gradient_is_feature_minus_mean_target():
    """With blending, d loss / d feat = feat - (mean of the targets of the covering patches)."""
    g = torch.Generator().manual_seed(4)
    feat = torch.randn(1, 2, 6, 6, generator=g, requires_grad=True)
    sp = torch.randn(9, 2, 3, 3, generator=g)
    filters = patches.normalize_patches(sp)
    losses.mrf_loss(feat, filters, sp, size=3, stride=1, blend=True).backward()
    idx = patches.match_ncc(patches.extract_patches(feat.detach(), 3, 1), filters)
    acc, cnt = torch.zeros(2, 6, 6), torch.zeros(6, 6)
    pos = list(itertools.product(patches.grid_positions(6, 3, 1), repeat=2))
    for (r, c), j in zip(pos, idx.tolist(), strict=True):
        acc[:, r : r + 3, c : c + 3] += sp[j]
        cnt[r : r + 3, c : c + 3] += 1
    torch.testing.assert_close(feat.grad[0], feat.detach()[0] - acc / cnt, rtol=1e-5, atol=1e-5)
