"""Losses as pure functions with shape docstrings.

MGAN paper Eq. (1): ``E = E_t + alpha_1 * E_c + alpha_2 * Y``, with the texture
loss ``E_t`` (Eq. 2) a hinge on D's patch scores, ``E_c`` a feature MSE and ``Y`` a
total-variation prior. Gram and MRF losses serve the seed systems (Gatys, CNNMRF).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


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


def tv_loss(x: Tensor, beta: float = 2.0) -> Tensor:
    """Total variation prior ``Y(x)`` (Mahendran & Vedaldi [23]), summed over pixels.

    ``sum_ij ((x[i,j+1]-x[i,j])^2 + (x[i+1,j]-x[i,j])^2)^(beta/2)`` on ``[N, C, H, W]``.
    With ``beta = 2`` this is the sum of squared neighbour differences; the sum (not
    the mean) matches the Torch implementations, so its weight is per pixel.
    """
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    if beta == 2.0:
        return (dx.pow(2) + dy.pow(2)).sum()
    return (dx.pow(2) + dy.pow(2) + 1e-8).pow(beta / 2).sum()


def gram(feat: Tensor) -> Tensor:
    """Gram matrix ``[N, C, C]`` of ``[N, C, H, W]``, normalised by ``C * H * W``."""
    n, c, h, w = feat.shape
    f = feat.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def gram_loss(feat: Tensor, target_gram: Tensor) -> Tensor:
    """Squared Frobenius distance between Gram matrices, mean over entries."""
    return F.mse_loss(gram(feat), target_gram.expand(feat.shape[0], -1, -1))
