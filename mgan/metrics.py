"""Evaluation measures that are not losses: nothing here is optimised, only reported (mgan.evaluate).

* :func:`sliced_wasserstein`: distance between the distributions of two feature maps'
  vectors (``mgan.evaluate``'s style distance).
* :func:`gram_distance`: relative distance between Gram matrices (second moments).
* :func:`checkerboard_score`: how much an image's spectrum peaks at the frequencies of an
  8 px periodic pattern, the checkerboard that a stride-8 stack of fractional-strided
  convolutions (MGAN's G, paper Sec. 3.2) leaves in its decodes (Odena et al. 2016,
  "Deconvolution and Checkerboard Artifacts").
"""

from __future__ import annotations

import torch
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
