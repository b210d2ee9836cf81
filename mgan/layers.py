"""Building blocks shared by the networks (the Markovian D's and MGAN's G).

Kept apart from ``discriminator.py`` and ``generator.py`` so that neither imports the
other: both follow DCGAN's recipe (Radford et al. [29]).
"""

from __future__ import annotations

import torch
from torch import nn


def dcgan_init_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN initialisation in place: conv weights N(0, 0.02), BN weight N(1, 0.02), bias 0.

    Modules are visited in ``module.modules()`` order, so one ``generator`` seed gives
    the same weights every time.
    """
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
