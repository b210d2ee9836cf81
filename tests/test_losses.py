"""Hinge, content, TV and Gram losses against plain formulas."""

import torch

from mgan import losses


def test_hinge_matches_margin_criterion():
    s = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    # real (+1): max(0, 1 - s); fake (-1): max(0, 1 + s)
    assert losses.hinge(s, 1.0).item() == torch.tensor([3.0, 1.5, 1.0, 0.5, 0.0]).mean().item()
    assert losses.hinge(s, -1.0).item() == torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0]).mean().item()


def test_hinge_gradient_zero_beyond_margin():
    s = torch.tensor([2.0, 0.0], requires_grad=True)
    losses.hinge(s, 1.0).backward()
    assert s.grad.tolist() == [0.0, -0.5]


def test_content_loss_is_mse():
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    assert torch.isclose(losses.content_loss(a, b), ((a - b) ** 2).mean())


def test_tv_loss_reference_and_constant_image():
    x = torch.randn(1, 3, 6, 7)
    ref = 0.0
    for i in range(5):
        for j in range(6):
            ref += ((x[..., i, j + 1] - x[..., i, j]) ** 2 + (x[..., i + 1, j] - x[..., i, j]) ** 2).sum()
    torch.testing.assert_close(losses.tv_loss(x), ref)
    assert losses.tv_loss(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    # beta=1 is the (smoothed) L1 / isotropic TV
    assert losses.tv_loss(x, beta=1.0) > 0


def test_gram_reference():
    f = torch.randn(2, 4, 3, 5)
    g = losses.gram(f)
    ref = torch.stack([fi.reshape(4, -1) @ fi.reshape(4, -1).T for fi in f]) / (4 * 15)
    torch.testing.assert_close(g, ref)
    assert losses.gram_loss(f, g[:1]).shape == ()


def test_relative_gram_loss_reference_and_scale_free():
    f, t = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    g, a = losses.gram(f), losses.gram(t)
    ref = torch.stack([((g[i] - a[i]) ** 2).sum() / (a[i] ** 2).sum() for i in range(3)]).mean()
    torch.testing.assert_close(losses.relative_gram_loss(f, t), ref)
    # the same for features scaled like Caffe's (x255): the layers' magnitudes do not weigh
    torch.testing.assert_close(losses.relative_gram_loss(255 * f, 255 * t), ref)
    assert losses.relative_gram_loss(t, t).item() == 0.0
    # blind to where a pattern lies: a shifted (circularly rolled) copy has the same Gram
    assert losses.relative_gram_loss(t.roll(2, dims=-1), t).item() < 1e-10
