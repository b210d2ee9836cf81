"""Losses as pure functions with shape docstrings.

MGAN paper Eq. (1): ``E = E_t + alpha_1 * E_c + alpha_2 * Y``, with the texture
loss ``E_t`` (Eq. 2) a hinge on D's patch scores, ``E_c`` a feature MSE and ``Y`` a
total-variation prior. Gram and MRF losses serve the seed systems (Gatys, CNNMRF).
Only what is optimised lives here; distances that only score results are in
:mod:`mgan.metrics`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan import patches as _patches


def hinge(scores: Tensor, label: float) -> Tensor:
    """Mean hinge ``max(0, 1 - label * s)``, Torch's ``nn.MarginCriterion(1)``.

    D is trained with label ``+1`` on real patches and ``-1`` on synthesised ones;
    the synthesis step uses ``+1`` on its own patches (paper Eq. 2: ``E_t =
    1/N sum max(0, 1 - s_i)``).

    Args:
        scores: any shape, one score per patch. Returns a scalar.
    """
    return F.relu(1.0 - label * scores.float()).mean()


def content_loss(feat: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between feature maps ``[N, C, H, W]`` (paper's ``E_c``)."""
    return F.mse_loss(feat.float(), target.float())


def tv_loss(x: Tensor, beta: float = 2.0, reduction: str = "sum") -> Tensor:
    """Total variation prior ``Y(x)`` (Mahendran & Vedaldi [23]).

    ``((x[i,j+1]-x[i,j])^2 + (x[i+1,j]-x[i,j])^2)^(beta/2)`` per position of ``[N, C, H, W]``,
    summed (``reduction="sum"``, the Torch implementations' convention, whose gradient per
    pixel does not shrink with the image) or averaged over the ``N * C * (H-1) * (W-1)``
    positions (``"mean"``: the gradient per pixel falls as ``1 / (H W)`` like that of every
    other mean loss, so the balance with a mean loss does not depend on image size).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    if beta == 2.0:
        t = dx.pow(2) + dy.pow(2)
    else:
        t = (dx.pow(2) + dy.pow(2) + 1e-8).pow(beta / 2)
    return t.sum() if reduction == "sum" else t.mean()


def gram(feat: Tensor) -> Tensor:
    """Gram matrix ``[N, C, C]`` of ``[N, C, H, W]``, normalised by ``C * H * W``."""
    n, c, h, w = feat.shape
    f = feat.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def gram_loss(feat: Tensor, target_gram: Tensor) -> Tensor:
    """Squared Frobenius distance between Gram matrices, mean over entries."""
    return F.mse_loss(gram(feat), target_gram.expand(feat.shape[0], -1, -1))


def relative_gram_loss(feat: Tensor, target_feat: Tensor) -> Tensor:
    """Mean over the batch of ``||G(feat_i) - G(target_i)||_F^2 / ||G(target_i)||_F^2``.

    Pairs each image ``[N, C, H, W]`` with its own target's second moments. Relative, so
    layers of different magnitude weigh alike and the value is the same for Caffe-scale and
    unit-scale features (it is :func:`mgan.metrics.gram_distance` squared, per image).
    """
    g, a = gram(feat), gram(target_feat)
    num = (g - a).pow(2).sum(dim=(1, 2))
    return (num / a.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)).mean()


# ---------------------------------------------------------------------------
# Seed systems: MRF (CNNMRF [21]). Evaluation distances (SWD, Gram distance) are in mgan.metrics.


def mrf_loss(
    feat: Tensor,
    style_filters: Tensor,
    style_patches: Tensor,
    size: int = 3,
    stride: int = 1,
    chunk: int = 4096,
    blend: bool = True,
) -> Tensor:
    """CNNMRF's MRF loss (Li & Wand, CVPR 2016 [21], Eq. 2), summed over patches.

    ``E_s = 1/2 sum_i || Psi_i(Phi(x)) - Psi_NN(i)(Phi(x_s)) ||^2`` where ``NN(i)`` is
    the style patch with the highest normalised cross-correlation to synthesised patch
    ``i`` (found without gradient, :func:`mgan.patches.match_ncc`). With ``blend`` the
    gradients of overlapping patches are averaged, not summed (CNNMRF's
    ``-(target - source)`` averaged over coverage, via :func:`mgan.patches.blend_gradients`).

    Args:
        feat: ``[1, C, H, W]`` synthesised features.
        style_filters: ``[S, C * size * size]`` unit-norm style patches (matching).
        style_patches: ``[S, C, size, size]`` raw style patches (targets).
    Returns:
        scalar (fp32).
    """
    src = _patches.blend_gradients(feat, size, stride) if blend else feat
    p = _patches.extract_patches(src, size, stride)  # [P, C, s, s]
    with torch.no_grad():
        idx = _patches.match_ncc(p.detach(), style_filters, chunk)
    target = style_patches[idx].to(p.device)
    return 0.5 * (p.float() - target.float()).pow(2).sum()
