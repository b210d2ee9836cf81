"""Shared network pieces (mgan.layers): DCGAN initialisation, seeded and by module order."""

import torch
from torch import nn

from mgan.layers import dcgan_init_


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.LeakyReLU(0.2), nn.ConvTranspose2d(64, 32, 4, 2),
                         nn.BatchNorm2d(32), nn.Linear(4, 4))


def test_dcgan_init_values_and_determinism():
    a, b = _net(), _net()
    dcgan_init_(a, torch.Generator().manual_seed(3))
    dcgan_init_(b, torch.Generator().manual_seed(3))
    for i in (0, 1, 3, 4):  # the conv, deconv and BN layers
        for pa, pb in zip(a[i].parameters(), b[i].parameters(), strict=True):
            assert torch.equal(pa, pb)
    conv, bn = a[0], a[1]
    assert abs(conv.weight.mean().item()) < 0.005 and abs(conv.weight.std().item() - 0.02) < 0.002
    assert (conv.bias == 0).all() and (a[3].bias == 0).all() and (bn.bias == 0).all()
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and abs(bn.weight.std().item() - 0.02) < 0.01
    before = a[5].weight.clone()
    dcgan_init_(a[5])  # layers DCGAN does not name are left alone
    assert torch.equal(a[5].weight, before)


def test_discriminator_and_generator_use_it():
    from mgan import discriminator, generator

    assert discriminator.dcgan_init_ is dcgan_init_ and generator.dcgan_init_ is dcgan_init_
