"""Markovian patch discriminators (MGAN paper Sec. 3, Fig. 2, green blocks).

Both follow DCGAN's recipe (Radford et al. [29]): LeakyReLU(0.2), BatchNorm, weights
from N(0, 0.02), BN gamma from N(1, 0.02), no biases (the original code zeroed conv
biases every step, which is the same as having none).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def dcgan_init_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN initialisation in place: conv weights N(0, 0.02), BN weight N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                m.weight.normal_(0.0, 0.02, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.normal_(1.0, 0.02, generator=generator)
                m.bias.zero_()


class PatchDiscriminator(nn.Module):
    """MDAN's D: one score per ``patch x patch`` window of a VGG feature map.

    ``LeakyReLU(0.2) -> conv 3x3 C->C -> BN -> LeakyReLU(0.2) -> conv patch x patch C->1``

    Fully convolutional: given an extracted patch ``[P, C, 8, 8]`` it returns ``[P, 1, 1, 1]``
    (the paper's per-patch classifier); given a whole map ``[N, C, H, W]`` with
    ``stride`` 4 it returns the score map ``[N, 1, (H-8)/4+1, (W-8)/4+1]`` of the same
    8x8 windows, sharing the 3x3 conv between overlapping windows (4x cheaper at
    stride 4). The two differ only in the 3x3 conv's zero padding at patch borders.

    Args:
        channels: input channels (256 for relu3_1).
        hidden: channels of the 3x3 conv (256 in the paper; Fig. 9 studies 4..128).
        patch: patch size (8 on relu3_1; Fig. 8 studies 4 and 16).
        stride: stride of the score map when fed whole maps.
    """

    def __init__(self, channels: int = 256, hidden: int = 256, patch: int = 8, stride: int = 4) -> None:
        super().__init__()
        self.patch, self.stride = patch, stride
        self.net = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, hidden, 3, 1, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 1, patch, stride, 0, bias=False),
        )
        dcgan_init_(self)

    def forward(self, feat: Tensor) -> Tensor:
        """``[N, C, H, W]`` (H, W >= patch) -> scores ``[N, 1, (H-p)//s+1, (W-p)//s+1]``."""
        if feat.shape[-1] < self.patch or feat.shape[-2] < self.patch:
            raise ValueError(f"feature map {tuple(feat.shape[-2:])} is smaller than the {self.patch}x{self.patch} patch")
        return self.net(feat)

    def score_map(self, feat: Tensor) -> Tensor:
        """Scores of every grid patch of ``feat`` (borders included), flattened ``[N, P']``.

        Where ``(H - patch)`` is not a multiple of the stride, the border row/column of
        patches flush with the edge (see :func:`mgan.patches.grid_positions`) is scored
        on a thin strip, so every position is covered as in the patch-wise D.
        """
        p, s = self.patch, self.stride
        h, w = feat.shape[-2:]
        h0, w0 = (h - p) // s * s + p, (w - p) // s * s + p
        parts = [self(feat[..., :h0, :w0]).flatten(1)]
        if h0 < h:
            parts.append(self(feat[..., h - p :, :w0]).flatten(1))
        if w0 < w:
            parts.append(self(feat[..., :h0, w - p :]).flatten(1))
        if h0 < h and w0 < w:
            parts.append(self(feat[..., h - p :, w - p :]).flatten(1))
        return torch.cat(parts, 1)
