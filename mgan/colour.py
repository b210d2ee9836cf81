"""Global colour statistics of images and an affine colour transfer between them.

MDAN's D judges relu3_1 neural patches, which constrain local structure far more than
the global colour distribution; the paper names the resulting "deviation in the global
colour distribution" as a weakness (Sec. 6). For unguided synthesis, where the output
should be a sample of the texture, :func:`match` gives the output the style's RGB mean
and covariance: the linear colour transfer of Gatys et al. 2016 ("Preserving colour in
neural artistic style transfer", Sec. 2.1; here from the style to the output, not the
other way round). It is an affine map of the RGB values, so the synthesised structure is
unchanged and only its palette moves (docs/calibration.md, "Unguided synthesis").
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-5  # added to the covariance diagonal: a flat image (zero variance) must not blow up


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """RGB mean ``[3, 1]`` and covariance ``[3, 3]`` (float64) of an image ``[1, 3, H, W]``."""
    if x.dim() != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"expected an image [1, 3, H, W], got {tuple(x.shape)}")
    if x.shape[-1] * x.shape[-2] < 2:
        raise ValueError("colour moments need at least 2 pixels")
    f = x[0].reshape(3, -1).double()
    return f.mean(1, keepdim=True), torch.cov(f)


def _sqrt_psd(c: Tensor, inverse: bool = False) -> Tensor:
    """Symmetric square root of a PSD ``[3, 3]`` matrix, or its inverse with eigenvalues floored at
    ``EPS`` (the only place a near-flat image needs regularising; the target's root stays exact)."""
    ev, v = torch.linalg.eigh(c)
    root = ev.clamp_min(EPS).rsqrt() if inverse else ev.clamp_min(0).sqrt()
    return v @ torch.diag(root) @ v.T


def match(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """``x [1, 3, H, W]`` mapped affinely so its RGB mean and covariance become ``mean [3, 1]``,
    ``cov [3, 3]`` (from :func:`moments`), clamped to ``[0, 1]``; same dtype as ``x``.

    The map is ``y = C_t^(1/2) C_x^(-1/2) (x - mu_x) + mu_t`` with symmetric square roots,
    the one whose linear part is closest to a scaling (no rotation of the colour axes
    beyond what the covariances require). Clamping aside, ``moments(y) == (mean, cov)``
    whenever every eigenvalue of ``x``'s covariance is above ``EPS`` (colour std ~0.003);
    flatter directions are scaled as if their variance were ``EPS``, so a nearly flat image
    is not blown up into noise.
    """
    mu, c = moments(x)
    a = _sqrt_psd(cov.to(c)) @ _sqrt_psd(c, inverse=True)
    f = x[0].reshape(3, -1).double()
    y = a @ (f - mu) + mean.to(mu)
    return y.reshape(x.shape).clamp(0, 1).to(x.dtype)
