"""Evaluation measures that are not losses: nothing here is optimised, only reported (mgan.evaluate).

* :func:`sliced_wasserstein`: distance between the distributions of two feature maps'
  vectors (``mgan.evaluate``'s style distance).
* :func:`gram_distance`: relative distance between Gram matrices (second moments).
* :func:`checkerboard_score`: how much an image's spectrum peaks at the frequencies of an
  8 px periodic pattern, the checkerboard that a stride-8 stack of fractional-strided
  convolutions (MGAN's G, paper Sec. 3.2) leaves in its decodes (Odena et al. 2016,
  "Deconvolution and Checkerboard Artifacts").
* :func:`psnr` and :func:`ssim`: the super-resolution literature's fidelity measures on the
  luminance channel (:func:`luminance`, ITU-R BT.601 Y) after cropping a border, as Johnson
  et al. 2016 (seed 002, Sec. 4.2, Table 3) and SRCNN report them on Set5, Set14 and BSD100
  (``mgan.sr_eval``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan.losses import gram

CHECKERBOARD_PERIOD = 8  # px: G upsamples x8 by three x2 layers (periods 8, 4 and 2 all lie on the 1/8 grid)
CHECKERBOARD_MIN_SIDE = 64  # px: the grid spacing (side / 8 bins) must exceed the ring radius + main lobe
_LOBE = 1  # bins: a Hann-windowed on-bin tone spreads over +-1 bin exactly
_RING = 3  # bins: outer Chebyshev radius of the neighbourhood a peak is compared with


def sliced_wasserstein(
    feat: Tensor, target: Tensor, projections: int = 64, generator: torch.Generator | None = None
) -> Tensor:
    """Sliced Wasserstein-2 distance between the feature vectors of two maps.

    Each map is a point cloud of ``H * W`` vectors in ``R^C``; both are projected on
    ``projections`` random unit directions, sorted, resampled to the same number of
    quantiles, and ``sqrt(mean (q_a - q_b)^2)`` is returned. Unlike the Gram matrix
    (second moments only) it compares the whole 1-D marginals along each direction.

    Args:
        feat, target: ``[1, C, H, W]`` and ``[1, C, H', W']``.
        generator: seeds the directions (same seed -> same value).
    Returns:
        scalar (fp32), in feature units.
    """
    if feat.shape[1] != target.shape[1]:
        raise ValueError(f"channel mismatch: {feat.shape[1]} vs {target.shape[1]}")
    c = feat.shape[1]
    a = feat.detach().float().reshape(feat.shape[0], c, -1).transpose(1, 2).reshape(-1, c)
    b = target.detach().float().reshape(target.shape[0], c, -1).transpose(1, 2).reshape(-1, c)
    dirs = torch.randn(c, projections, generator=generator).to(a.device)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = (a @ dirs).sort(dim=0)
    pb, _ = (b @ dirs).sort(dim=0)
    n = min(pa.shape[0], pb.shape[0])
    qa, qb = _quantiles(pa, n), _quantiles(pb, n)
    return (qa - qb).pow(2).mean().sqrt()


def _quantiles(sorted_vals: Tensor, n: int) -> Tensor:
    """Resample sorted ``[M, K]`` columns to ``n`` evenly spaced quantiles (linear interpolation)."""
    m = sorted_vals.shape[0]
    if m == n:
        return sorted_vals
    pos = ((torch.arange(n, device=sorted_vals.device, dtype=torch.float32) + 0.5) * m / n - 0.5).clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    w = (pos - lo.float())[:, None]
    return sorted_vals[lo] * (1 - w) + sorted_vals[hi] * w


def gram_distance(feat: Tensor, target_gram: Tensor) -> Tensor:
    """Relative Gram distance ``||G(feat) - A||_F / ||A||_F`` (0 = same second moments).

    Args:
        feat: ``[1, C, H, W]``; target_gram: ``[1, C, C]`` from :func:`mgan.losses.gram`.
    """
    g = gram(feat)
    return (g - target_gram).norm() / target_gram.norm().clamp_min(1e-12)


@torch.no_grad()
def checkerboard_score(img: Tensor, period: int = CHECKERBOARD_PERIOD) -> float:
    """Spectral peakiness at the harmonics of a ``period``-px pattern, in dB (~0 for natural images).

    A pattern repeating every ``period`` px (the 8 px checkerboard of a x8
    fractional-strided decoder and its 4 px and 2 px sub-patterns) puts all its energy at
    the grid frequencies ``(k / period, l / period)`` cycles per pixel, ``k, l`` in
    ``0 .. period - 1``, not both 0. Natural images have smooth spectra there. For each
    channel (mean removed, Hann-windowed so that the image border does not leak, cropped
    to sides that are multiples of ``period`` so the grid falls on DFT bins), each grid
    frequency's power (mean over its 3x3 main lobe) is divided by the mean power of the
    ring of bins 2-3 away (Chebyshev) around it; the score is ``10 log10`` of the mean
    ratio over the ``period^2 - 1`` grid frequencies, averaged over channels and images.

    Args:
        img: ``[N, C, H, W]`` (or ``[C, H, W]``), any range; sides >= 64 px after
            cropping to multiples of ``period``.
        period: the pattern's period in px.

    Returns:
        The score in dB: about 0 when the grid frequencies are like their neighbours,
        > 0 when they stand out (a faint 8 px pattern of amplitude 1/255 on a photo
        already gives several dB). Being relative to the image's own spectrum, it is
        unchanged by brightness and contrast, and it grows without bound on images with
        almost no fine detail (a smooth gradient plus any 8 px pattern scores tens of dB);
        compare an output with its photo or MDAN target when in doubt.
    """
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4:
        raise ValueError(f"checkerboard_score expects [N, C, H, W], got {tuple(img.shape)}")
    if period < 2:
        raise ValueError(f"period must be >= 2, got {period}")
    h, w = img.shape[-2] // period * period, img.shape[-1] // period * period
    # A ring must not reach the neighbouring grid frequency's main lobe (grid spacing side / period bins).
    if min(h, w) < CHECKERBOARD_MIN_SIDE or min(h, w) // period <= _RING + _LOBE:
        raise ValueError(f"checkerboard_score needs sides >= {CHECKERBOARD_MIN_SIDE} px and >= "
                         f"{period * (_RING + _LOBE + 1)} px for period {period}, got {tuple(img.shape[-2:])}")
    x = img[..., :h, :w].detach().to("cpu", torch.float64)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    # The periodic Hann window's DFT is exactly 3 taps (1/4, 1/2, 1/4): an on-bin tone stays in
    # its 3x3 block, and the leakage of the non-periodic image border falls off fast.
    win = torch.hann_window(h, periodic=True, dtype=torch.float64)[:, None] * torch.hann_window(
        w, periodic=True, dtype=torch.float64)[None, :]
    power = torch.fft.fft2(x * win).abs().pow(2)  # [N, C, h, w]
    k = torch.arange(period)
    py, px = torch.meshgrid(k * (h // period), k * (w // period), indexing="ij")
    py, px = py.flatten()[1:], px.flatten()[1:]  # the grid without DC: [period^2 - 1]
    d = torch.arange(-_RING, _RING + 1)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    dy, dx = dy.flatten(), dx.flatten()
    cheb = torch.maximum(dy.abs(), dx.abs())
    rows = (py[:, None] + dy[None, :]) % h  # [peaks, offsets]; the spectrum wraps around
    cols = (px[:, None] + dx[None, :]) % w
    near = power[..., rows, cols]  # [N, C, peaks, offsets]
    # A floor far below any real power, so a flat channel scores 0 dB rather than 0/0.
    eps = 1e-12 * power.mean(dim=(-2, -1))[..., None] + 1e-30
    lobe = near[..., cheb <= _LOBE].mean(-1)
    ring = near[..., cheb > _LOBE].mean(-1)
    ratio = ((lobe + eps) / (ring + eps)).mean(-1)  # [N, C]
    return float((10 * torch.log10(ratio)).mean())


# ---------------------------------------------------------------------------- super-resolution fidelity

# ITU-R BT.601 luma for RGB in [0, 1] -> Y in [16, 235] / 255 (studio swing): the coefficients of
# MATLAB's rgb2ycbcr, through which the SR literature (SRCNN, Johnson et al., BasicSR's
# ``test_y_channel``) computes its PSNR and SSIM. The offset cancels in PSNR but not in SSIM's
# luminance term, so it is kept.
BT601_Y = (65.481 / 255, 128.553 / 255, 24.966 / 255)
BT601_Y_OFFSET = 16 / 255
SSIM_WINDOW = 11  # Wang et al. 2004, Sec. III-C: an 11x11 circular-symmetric Gaussian window ...
SSIM_SIGMA = 1.5  # ... with standard deviation 1.5 px
SSIM_K1, SSIM_K2 = 0.01, 0.03


def luminance(x: Tensor) -> Tensor:
    """BT.601 luma ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` of RGB in ``[0, 1]``.

    ``[N, 3, H, W]`` -> ``[N, 1, H, W]`` in ``[16/255, 235/255]``, float64; a one-channel
    ``[N, 1, H, W]`` input is taken to be luminance already and returned (as float64).
    Computed in floating point from the RGB values, without rounding Y to 8 bits
    (as BasicSR's ``to_y_channel``; MATLAB rounds a uint8 input's Y, a < 0.01 dB difference).
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected [N, 3, H, W] RGB or [N, 1, H, W] luminance, got {tuple(x.shape)}")
    x = x.detach().to(torch.float64)
    if x.shape[1] == 1:
        return x
    w = torch.tensor(BT601_Y, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) + BT601_Y_OFFSET


def _y_pair(x: Tensor, y: Tensor, border: int) -> tuple[Tensor, Tensor]:
    """Both images' luminance ``[N, 1, H - 2 border, W - 2 border]`` (float64), shapes checked."""
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    a, b = luminance(x), luminance(y)
    if min(a.shape[-2:]) <= 2 * border:
        raise ValueError(f"a border of {border} px leaves nothing of a {a.shape[-1]}x{a.shape[-2]} image")
    if border:
        a, b = a[..., border:-border, border:-border], b[..., border:-border, border:-border]
    return a, b


@torch.no_grad()
def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, border: int = 0) -> Tensor:
    """Peak signal-to-noise ratio on luminance, ``10 log10(data_range^2 / MSE_Y)`` dB, per image.

    The SR convention (SRCNN, Dong et al. 2014; Johnson et al. 2016 Table 3): both images are
    converted to BT.601 Y (:func:`luminance`), ``border`` pixels are cropped from each side
    (usually the scale factor: the border is where an upsampler lacks context), and the mean
    squared error is taken over what is left. With RGB in ``[0, 1]`` and ``data_range`` 1 this
    equals PSNR on 8-bit Y with peak 255.

    Args:
        x, y: ``[N, 3, H, W]`` RGB in ``[0, 1]`` (or ``[N, 1, H, W]`` luminance), same shape.
        data_range: the peak value (1 for images in ``[0, 1]``).
        border: pixels cropped from each side before measuring.

    Returns:
        ``[N]`` float64, in dB (``inf`` for identical images); average over a data set with
        the mean of these per-image values, as the literature does.
    """
    a, b = _y_pair(x, y, border)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 2-D Gaussian ``[1, 1, size, size]`` (the outer product of a 1-D one)."""
    k = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


@torch.no_grad()
def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, border: int = 0) -> Tensor:
    """Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004, Eq. 13) on luminance, per image.

    For every position of an 11x11 Gaussian window (sigma 1.5, weights summing to 1) inside
    the image (no padding: MATLAB's ``filter2(..., 'valid')`` in Wang's ``ssim_index.m``),

        SSIM(a, b) = (2 mu_a mu_b + C1)(2 sigma_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(sigma_a^2 + sigma_b^2 + C2))

    with window-weighted means, variances and covariance and ``C1 = (K1 L)^2``,
    ``C2 = (K2 L)^2``, ``K1 = 0.01``, ``K2 = 0.03``, ``L = data_range``; the image's score is the
    mean of this map (the paper's MSSIM, Eq. 17). As in the SR literature (and BasicSR), the
    images are BT.601 Y (:func:`luminance`) with ``border`` pixels cropped from each side, and
    not downsampled first (the later ``ssim.m`` shrinks images over 256 px by
    ``round(min side / 256)``; SR papers do not).

    Args:
        x, y: ``[N, 3, H, W]`` RGB in ``[0, 1]`` (or ``[N, 1, H, W]`` luminance), same shape;
            at least 11 px a side after the border crop.
        data_range: ``L``, the dynamic range (1 for images in ``[0, 1]``).
        border: pixels cropped from each side before measuring.

    Returns:
        ``[N]`` float64 in ``[-1, 1]``, 1 for identical images.
    """
    a, b = _y_pair(x, y, border)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px after the border crop, "
                         f"got {a.shape[-1]}x{a.shape[-2]}")
    win = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, a.dtype, a.device)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win)

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    # E[ab] - E[a]E[b] in float64: in float32 this difference of near-equal terms loses digits on flat regions.
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return smap.mean(dim=(1, 2, 3))

