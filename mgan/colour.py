"""Global colour statistics of images and an affine colour transfer between them.

MDAN's D judges relu3_1 neural patches, which constrain local structure far more than
the global colour distribution; the paper names the resulting "deviation in the global
colour distribution" as a weakness (Sec. 6). For unguided synthesis, where the output
should be a sample of the texture, :func:`match` gives the output the style's RGB mean
and covariance: the linear colour transfer of Gatys et al. 2016 ("Preserving colour in
neural artistic style transfer", Sec. 2.1; here from the style to the output, not the
other way round). It is an affine map of the RGB values, so the synthesised structure is
unchanged and only its palette moves (docs/calibration.md, "Unguided synthesis").

:func:`stretch` is the original code's global contrast stretch of MDAN's outputs (so of
MGAN's training targets), :func:`contrast` the same stretch to the style's own brightness
and contrast, and :func:`minmax` its test-time normalisation of G's output
(``image.toDisplayTensor`` in ``demo_MGAN.lua``). :mod:`mgan.decode` post-processes G's
output with :func:`match` (onto the painting's moments, the default where a release carries
them), :func:`stretch` or :func:`minmax` (docs/training.md, "G's output gets its painting's
colours").
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 1 << 20  # pixels per float64 block in moments() and match()
# Where a released generator keeps its painting's moments (its ``extra`` metadata, as
# :func:`moments_to_json`): mgan.train and mgan.zoo write them, mgan.decode's "match" reads them.
STYLE_COLOUR_KEY = "style_colour"
EPS = 1e-5  # added to the covariance diagonal: a flat image (zero variance) must not blow up


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """RGB mean ``[3, 1]`` and covariance ``[3, 3]`` (float64, unbiased) of an image ``[1, 3, H, W]``.

    Accumulated in float64 over blocks of :data:`CHUNK` pixels, so a 4096^2 image costs no
    float64 copy of itself (400 MB) on top of the decode."""
    if x.dim() != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"expected an image [1, 3, H, W], got {tuple(x.shape)}")
    if x.shape[-1] * x.shape[-2] < 2:
        raise ValueError("colour moments need at least 2 pixels")
    f = x[0].reshape(3, -1)
    n = f.shape[1]
    mu = torch.zeros(3, 1, dtype=torch.float64, device=x.device)
    for i in range(0, n, CHUNK):
        mu += f[:, i : i + CHUNK].double().sum(1, keepdim=True)
    mu /= n
    c = torch.zeros(3, 3, dtype=torch.float64, device=x.device)
    for i in range(0, n, CHUNK):
        d = f[:, i : i + CHUNK].double() - mu
        c += d @ d.T
    return mu, c / (n - 1)


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
    b = mean.to(mu) - a @ mu  # y = a x + b
    f = x[0].reshape(3, -1)
    y = torch.empty_like(f)
    for i in range(0, f.shape[1], CHUNK):  # float64 per block: bounded memory at any size
        y[:, i : i + CHUNK] = (a @ f[:, i : i + CHUNK].double() + b).clamp_(0, 1).to(x.dtype)
    return y.reshape(x.shape)


def stretch(x: Tensor, sigmas: float = 2.0) -> Tensor:
    """Global contrast stretch of each image of ``x [N, C, H, W]`` to ``[0, 1]``: subtract the
    image's mean, clip at ``+-sigmas`` standard deviations (over all its channels and pixels),
    min-max normalise. The original MDAN code's post-process (mean +-2 sigma); a flat image
    maps to 0 rather than dividing by zero. Same dtype as ``x``."""
    if x.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got {tuple(x.shape)}")
    dims = (1, 2, 3)
    m = x.mean(dims, keepdim=True)
    s = x.std(dims, keepdim=True) if x[0].numel() > 1 else torch.zeros_like(m)
    return minmax(torch.maximum(torch.minimum(x - m, sigmas * s), -sigmas * s))


def contrast(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """Each image of ``x [N, 3, H, W]`` mapped by one gain and one offset, the same for its three
    channels, so that its mean and standard deviation over all channels and pixels become those
    of an image with RGB mean ``mean [3, 1]`` and covariance ``cov [3, 3]`` (from
    :func:`moments`); clamped to ``[0, 1]``, same dtype as ``x``.

    :func:`stretch` gives every image the same contrast whatever the style (mean 0.5,
    +-2 sigma over the range: a pixel std near 0.23), too much for a light, low-contrast
    painting and too little for a dark one. This is the same global stretch to the style's own
    brightness and contrast. The one gain keeps the image's colour balance, which :func:`match`
    re-fits. A flat image maps to the style's mean.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB images [N, 3, H, W], got {tuple(x.shape)}")
    mean, var = mean.double().flatten(), cov.double().diagonal()
    m_t = mean.mean()  # moments over all channels from the per-channel ones: law of total variance
    s_t = (var.mean() + (mean - m_t).square().mean()).sqrt()
    dims = (1, 2, 3)
    f = x.float()
    m = f.mean(dims, keepdim=True)
    s = f.std(dims, keepdim=True) if x[0].numel() > 1 else torch.zeros_like(m)
    gain = float(s_t) / s.clamp_min(EPS**0.5)
    return ((f - m) * gain + float(m_t)).clamp_(0, 1).to(x.dtype)


def minmax(x: Tensor) -> Tensor:
    """Each image of ``x [N, C, H, W]`` mapped affinely so its minimum (over all channels and
    pixels) becomes 0 and its maximum 1: the original ``demo_MGAN.lua``'s normalisation of G's
    output. A flat image maps to 0. Same dtype as ``x``."""
    if x.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got {tuple(x.shape)}")
    dims = (1, 2, 3)
    lo = x.amin(dims, keepdim=True)
    return (x - lo) / (x.amax(dims, keepdim=True) - lo).clamp_min(1e-8)


def moments_to_json(mean: Tensor, cov: Tensor) -> dict[str, list]:
    """``{"mean": [r, g, b], "cov": [[3 x 3]]}``: :func:`moments` as JSON (release metadata)."""
    return {"mean": [float(v) for v in mean.flatten()], "cov": [[float(v) for v in row] for row in cov]}


def moments_from_json(obj: object) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`moments_to_json`: ``(mean [3, 1], cov [3, 3])`` float64; raises
    ``ValueError`` unless ``obj`` holds 3 finite means in ``[0, 1]`` and a finite, symmetric,
    positive semi-definite 3 x 3 covariance."""
    try:
        mean = torch.tensor(obj["mean"], dtype=torch.float64)  # type: ignore[index]
        cov = torch.tensor(obj["cov"], dtype=torch.float64)  # type: ignore[index]
    except (TypeError, KeyError, ValueError, RuntimeError) as exc:
        raise ValueError(f"colour moments must be {{'mean': [3 numbers], 'cov': [3 x 3 numbers]}} ({exc})") from None
    if mean.shape != (3,) or cov.shape != (3, 3):
        raise ValueError(f"colour moments need a mean of 3 and a 3 x 3 covariance, got {tuple(mean.shape)} and "
                         f"{tuple(cov.shape)}")
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        raise ValueError("colour moments must be finite")
    if (mean < 0).any() or (mean > 1).any():
        raise ValueError(f"colour mean must lie in [0, 1] (RGB), got {mean.tolist()}")
    if not torch.allclose(cov, cov.T, atol=1e-8) or torch.linalg.eigvalsh(cov).min() < -1e-8:
        raise ValueError("colour covariance must be symmetric positive semi-definite")
    return mean.view(3, 1), cov
