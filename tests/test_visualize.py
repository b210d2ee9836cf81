"""Feature inversion, activation maximisation and guided backprop on VGG-19."""

import math

import pytest
import torch

from mgan import visualize
from mgan.config import ConfigError
from mgan.visualize import InversionConfig, MaximizeConfig


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float((a - b).pow(2).mean()))


def test_relu1_1_inversion_reconstructs_the_photo(encoder, synthetic_image):
    photo = synthetic_image[..., :40, :40]
    cfg = InversionConfig(layer="relu1_1", iterations=60)
    rec, stats = visualize.invert(photo, cfg, encoder=encoder)
    assert rec.shape == photo.shape
    assert stats.loss[-1] < 1e-3 * stats.loss[0]
    assert _psnr(rec, photo) > 28  # ~32 dB; the noise init is at ~11 dB


def test_deeper_inversion_is_worse(encoder, synthetic_image):
    photo = synthetic_image[..., :40, :40]
    shallow, _ = visualize.invert(photo, InversionConfig(layer="relu1_1", iterations=10), encoder=encoder)
    deep, _ = visualize.invert(photo, InversionConfig(layer="relu4_1", iterations=10), encoder=encoder)
    assert _psnr(shallow, photo) > _psnr(deep, photo)


def test_maximize_increases_activation(encoder):
    cfg = MaximizeConfig(layer="relu3_1", channel=5, size=40, iterations=12, blur_every=4, jitter=2)
    img, stats = visualize.maximize(cfg, encoder=encoder)
    assert img.shape == (1, 3, 40, 40) and 0 <= img.min() and img.max() <= 1
    assert stats.loss[-1] > stats.loss[0]


def test_guided_backprop_is_local_for_a_neuron(encoder, synthetic_image):
    grad = visualize.guided_backprop(synthetic_image, "relu2_1", 3, encoder=encoder, neuron=True)
    assert grad.shape == synthetic_image.shape and torch.isfinite(grad).all()
    support = grad.abs().sum(1)[0] > 0
    rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
    assert support.any()
    # relu2_1 sees a 10x10 pixel window
    assert int(rows.max() - rows.min()) < 10 and int(cols.max() - cols.min()) < 10
    channel = visualize.guided_backprop(synthetic_image, "relu2_1", 3, encoder=encoder)
    plain_x = synthetic_image.clone().requires_grad_(True)
    plain = torch.autograd.grad(encoder(plain_x, ["relu2_1"])["relu2_1"][0, 3].sum(), [plain_x])[0]
    assert not torch.allclose(channel, plain)
    sal = visualize.saliency_image(channel)
    assert sal.shape == channel.shape and 0 <= sal.min() and sal.max() <= 1


def test_config_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="channel"):
        MaximizeConfig(layer="relu1_1", channel=64).validate()
    with pytest.raises(ConfigError, match="layer"):
        InversionConfig(layer="pool3").validate()
    out = str(tmp_path / "o.png")
    assert visualize.main(["maximize", "--layer", "relu7_1", "--out", out, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "relu7_1" in err and len(err.splitlines()) == 1
    assert visualize.main(["invert", "--image", str(tmp_path / "missing.jpg"), "--out", out]) == 2
    assert "not found" in capsys.readouterr().err
    assert visualize.main(["saliency", "--image", str(tmp_path / "missing.jpg"), "--channel", "999", "--out", out]) == 2
    assert "channels 0..511" in capsys.readouterr().err
