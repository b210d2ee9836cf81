"""Data augmentation shared by MDAN's style pool and MGAN's training crops.

MGAN paper Sec. 3.2 and the original code: each image is augmented by rotations
(-10, 0, +10 degrees) x scales (1/1.1, 1, 1.1) x horizontal flip (18 copies).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def augment(x: Tensor, angle: float = 0.0, scale: float = 1.0, flip: bool = False) -> Tensor:
    """Rotate (degrees, about the centre), rescale and optionally mirror an image.

    Rotation uses reflection padding, so no black corners enter the patch pool.

    Args:
        x: ``[N, C, H, W]``. Returns ``[N, C, round(H*scale), round(W*scale)]``.
    """
    if scale != 1.0:
        size = (max(1, round(x.shape[2] * scale)), max(1, round(x.shape[3] * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    if angle:
        n, _, h, w = x.shape
        t = math.radians(angle)
        # affine_grid works in normalised coords; correct for the aspect ratio so the
        # rotation is rigid in pixels.
        a = torch.tensor(
            [[math.cos(t), -math.sin(t) * h / w, 0.0], [math.sin(t) * w / h, math.cos(t), 0.0]],
            dtype=x.dtype, device=x.device,
        )
        grid = F.affine_grid(a.expand(n, 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if flip:
        x = x.flip(-1)
    return x


def augmentations(
    angles: Sequence[float] = (-10.0, 0.0, 10.0),
    scales: Sequence[float] = (1 / 1.1, 1.0, 1.1),
    flip: bool = True,
) -> list[tuple[float, float, bool]]:
    """All ``(angle, scale, flip)`` combinations (18 with the defaults)."""
    flips = (False, True) if flip else (False,)
    return list(itertools.product(angles, scales, flips))
