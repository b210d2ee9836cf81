"""Markovian patch discriminators (MGAN paper Sec. 3, Fig. 2, green blocks).

Both follow DCGAN's recipe (Radford et al. [29]): LeakyReLU(0.2), BatchNorm, weights
from N(0, 0.02), BN gamma from N(1, 0.02) (:func:`mgan.layers.dcgan_init_`), no biases
(the original code zeroed conv biases every step, which is the same as having none).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mgan.layers import dcgan_init_


class PatchDiscriminator(nn.Module):
    """MDAN's D: one score per ``patch x patch`` window of a VGG feature map.

    ``LeakyReLU(0.2) -> conv 3x3 C->C -> BN -> LeakyReLU(0.2) -> conv patch x patch C->1``

    Fully convolutional: given an extracted patch ``[P, C, 8, 8]`` it returns ``[P, 1, 1, 1]``
    (the paper's per-patch classifier); given a whole map ``[N, C, H, W]`` with
    ``stride`` 4 it returns the score map ``[N, 1, (H-8)/4+1, (W-8)/4+1]`` of the same
    8x8 windows, sharing the 3x3 conv between overlapping windows (up to 4x fewer positions
    at stride 4). The two differ in the 3x3 conv's zero padding at patch borders (on a map a
    window's score sees 10x10 cells) and in BatchNorm's batch, which is enough to change
    MDAN's images: docs/calibration.md, "D on patches or on maps".

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


class MGANDiscriminator(nn.Module):
    """MGAN's D on neural patches of G's output (paper Sec. 3.2, Fig. 2; original code's netD).

    ``LeakyReLU(0.2) -> conv 4x4/2 C->h0 -> BN -> LeakyReLU(0.2) -> conv 4x4/2 h0->h1 -> BN
    -> LeakyReLU(0.2) -> conv 1x1 h1->1``

    On relu3_1 of a 128x128 crop (``[N, 256, 32, 32]``) it returns an ``[N, 1, 8, 8]``
    score map; each score judges one neural patch (receptive field 10x10 relu3_1 cells,
    about 40 image pixels). :meth:`masked` drops the outer ``ring`` of scores, whose
    patches lie partly in the zero padding (the original masked the outer ring of the
    8x8 map, keeping 36 scores). The first LeakyReLU is a no-op on relu features and is
    kept only to mirror the original network.

    Args:
        channels: input channels (256 for relu3_1).
        hidden: widths of the two strided convs (256, 512 in the paper).
        ring: width of the masked border of the score map.
    """

    def __init__(self, channels: int = 256, hidden: tuple[int, ...] = (256, 512), ring: int = 1) -> None:
        # hidden: any tuple, as configs give one; a length other than two is the ValueError below
        super().__init__()
        if len(hidden) != 2 or min(hidden) < 1:
            raise ValueError(f"hidden must be two positive widths, got {hidden}")
        if ring < 0:
            raise ValueError(f"ring must be >= 0, got {ring}")
        h0, h1 = hidden
        self.ring = ring
        self.net = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, h0, 4, 2, 1, bias=False),
            nn.BatchNorm2d(h0),
            nn.LeakyReLU(0.2),
            nn.Conv2d(h0, h1, 4, 2, 1, bias=False),
            nn.BatchNorm2d(h1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(h1, 1, 1, 1, 0, bias=False),
        )
        dcgan_init_(self)

    def forward(self, feat: Tensor) -> Tensor:
        """``[N, C, H, W]`` (H, W >= 4) -> score map ``[N, 1, H', W']`` with ``H' = floor(floor(H/2)/2)``."""
        if min(feat.shape[-2:]) < 4:
            raise ValueError(f"feature map {tuple(feat.shape[-2:])} is too small for MGAN's D (needs >= 4x4)")
        return self.net(feat)

    def masked(self, scores: Tensor) -> Tensor:
        """Scores without the outer ring, flattened ``[N, P]``; maps too small to lose a ring are kept whole."""
        r = self.ring
        h, w = scores.shape[-2:]
        if r and h > 2 * r and w > 2 * r:
            scores = scores[..., r : h - r, r : w - r]
        return scores.flatten(1)
