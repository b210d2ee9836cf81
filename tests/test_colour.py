"""mgan.colour: moments of an image and the affine colour transfer onto given moments."""

import pytest
import torch

from mgan import colour


def _image(seed: int, mix: list[list[float]], offset: list[float]) -> torch.Tensor:
    """Correlated RGB noise kept well inside [0, 1], so the transfer needs no clamping."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(3, 32 * 48, generator=g)
    x = torch.tensor(mix) @ z + torch.tensor(offset).view(3, 1)
    return x.view(1, 3, 32, 48)


def test_moments_are_the_plain_formulas():
    x = _image(0, [[0.05, 0.02, 0.0], [0.0, 0.04, 0.01], [0.01, 0.0, 0.03]], [0.5, 0.4, 0.6])
    mean, cov = colour.moments(x)
    f = x[0].reshape(3, -1).double()
    d = f - f.mean(1, keepdim=True)
    torch.testing.assert_close(mean[:, 0], f.mean(1))
    torch.testing.assert_close(cov, d @ d.T / (f.shape[1] - 1))


def test_match_gives_the_target_moments_and_keeps_structure():
    x = _image(0, [[0.05, 0.02, 0.0], [0.0, 0.04, 0.01], [0.01, 0.0, 0.03]], [0.5, 0.4, 0.6])
    ref = _image(1, [[0.06, 0.0, 0.0], [0.03, 0.02, 0.0], [0.0, 0.01, 0.02]], [0.6, 0.45, 0.3])
    target = colour.moments(ref)
    y = colour.match(x, *target)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0 < y.min() and y.max() < 1  # inside the range: no clamping, so the moments are exact
    mean, cov = colour.moments(y)
    torch.testing.assert_close(mean, target[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(cov, target[1], atol=1e-5, rtol=1e-3)
    # affine in RGB: the same pixel-to-pixel map everywhere, so the spatial pattern survives
    a = torch.linalg.lstsq(torch.cat([x[0].reshape(3, -1), torch.ones(1, 32 * 48)]).T, y[0].reshape(3, -1).T).solution
    fit = torch.cat([x[0].reshape(3, -1), torch.ones(1, 32 * 48)]).T @ a
    torch.testing.assert_close(fit, y[0].reshape(3, -1).T, atol=1e-4, rtol=0)
    # an image already at the target moments is returned unchanged
    torch.testing.assert_close(colour.match(x, *colour.moments(x)), x, atol=1e-4, rtol=0)


def test_match_of_a_flat_image_is_the_target_mean():
    """No variance to scale: the flat image moves to the target's mean colour, without noise."""
    flat = torch.full((1, 3, 8, 8), 0.3)
    ref = _image(2, [[0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]], [0.5, 0.6, 0.4])
    mean, cov = colour.moments(ref)
    y = colour.match(flat, mean, cov)
    torch.testing.assert_close(y, mean.float().view(1, 3, 1, 1).expand_as(y), atol=1e-6, rtol=0)


def test_match_onto_a_grey_style_stays_grey():
    """A grey target (R = G = B, a singular covariance) gives a grey output: no chroma noise."""
    x = _image(0, [[0.05, 0.02, 0.0], [0.0, 0.04, 0.01], [0.01, 0.0, 0.03]], [0.5, 0.4, 0.6])
    grey = _image(3, [[0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0]], [0.5, 0.5, 0.5])
    y = colour.match(x, *colour.moments(grey))
    assert (y[:, 0] - y[:, 1]).abs().max() < 1e-5 and (y[:, 1] - y[:, 2]).abs().max() < 1e-5


def test_moments_reject_a_batch_or_grey_image():
    with pytest.raises(ValueError, match=r"\[1, 3, H, W\]"):
        colour.moments(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[1, 3, H, W\]"):
        colour.moments(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="2 pixels"):
        colour.moments(torch.rand(1, 3, 1, 1))
