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


def test_stretch_is_the_original_formula_per_image():
    """Mean +-2 std clipped, then min-max: written out for one image; in a batch each image
    gets its own statistics, as if alone."""
    g = torch.Generator().manual_seed(4)
    x = torch.cat([0.5 + 0.05 * torch.randn(1, 3, 20, 30, generator=g), torch.rand(1, 3, 20, 30, generator=g)])
    y = colour.stretch(x)
    a = x[:1]
    m, s = a.mean(), a.std()
    c = torch.maximum(torch.minimum(a - m, 2 * s), -2 * s)
    torch.testing.assert_close(y[:1], (c - c.min()) / (c.max() - c.min()))
    torch.testing.assert_close(y[1:], colour.stretch(x[1:]))
    assert y.amin((1, 2, 3)).tolist() == [0.0, 0.0] and y.amax((1, 2, 3)).tolist() == [1.0, 1.0]
    # a low-contrast image gains contrast: 4 std span the range, so its std rises to ~0.25
    assert x[0].std() < 0.06 and y[0].std() > 0.2
    # a monotone map of the values: sorted by the input, the output never decreases
    order = x[0].flatten().argsort()
    assert (y[0].flatten()[order].diff() >= 0).all()


def test_minmax_maps_each_image_range_affinely():
    x = torch.stack([torch.linspace(0.2, 0.6, 3 * 8 * 8), torch.linspace(-1.0, 3.0, 3 * 8 * 8)]).view(2, 3, 8, 8)
    y = colour.minmax(x)
    torch.testing.assert_close(y[0], y[1])  # both ramps map onto the same [0, 1] ramp
    torch.testing.assert_close(y[0].flatten(), torch.linspace(0, 1, 3 * 8 * 8))


@pytest.mark.parametrize("fn", [colour.stretch, colour.minmax])
def test_contrast_maps_of_a_flat_image_are_finite(fn):
    y = fn(torch.full((1, 3, 4, 4), 0.3))
    assert torch.isfinite(y).all() and (y == 0).all()
    with pytest.raises(ValueError, match="N, C, H, W"):
        fn(torch.rand(3, 4, 4))


def test_contrast_gives_the_styles_mean_and_std_with_one_gain():
    """The stretch to the style's own brightness and contrast: the output's mean and std over
    all channels and pixels are the style's, and one gain and offset serve all three channels,
    so the differences between channels (the colour balance) scale with the rest."""
    x = _image(0, [[0.05, 0.02, 0.0], [0.0, 0.04, 0.01], [0.01, 0.0, 0.03]], [0.5, 0.4, 0.6])
    ref = _image(1, [[0.06, 0.0, 0.0], [0.03, 0.02, 0.0], [0.0, 0.01, 0.02]], [0.6, 0.45, 0.3])
    y = colour.contrast(x, *colour.moments(ref))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0 < y.min() and y.max() < 1  # no clamping, so the figures are exact
    torch.testing.assert_close(y.mean(), ref.mean(), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(), ref.std(), atol=1e-4, rtol=0)
    gain = ref.std() / x.std()
    torch.testing.assert_close(y - y.mean(), (x - x.mean()) * gain, atol=1e-4, rtol=0)
    # unlike the original stretch, a light low-contrast style gives a light low-contrast output
    pale = _image(2, [[0.02, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 0.02]], [0.8, 0.8, 0.75])
    p = colour.contrast(x, *colour.moments(pale))
    assert p.std() < 0.05 < colour.stretch(x).std() and p.mean() > 0.7
    # a flat image goes to the style's mean; the batch dimension is per image
    torch.testing.assert_close(colour.contrast(torch.full((2, 3, 4, 4), 0.3), *colour.moments(ref)),
                               torch.full((2, 3, 4, 4), ref.mean().item()), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        colour.contrast(torch.rand(1, 1, 4, 4), *colour.moments(ref))
