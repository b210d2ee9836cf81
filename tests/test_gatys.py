"""Gatys texture synthesis and style transfer: loss goes down, properties, CLI errors."""

import pytest
import torch

from mgan import gatys
from mgan.config import ConfigError
from mgan.gatys import Gatys, GatysConfig

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def _cfg(**kw) -> GatysConfig:
    # The session encoder has relu1_1..relu5_1 taps, so the content layer is relu4_1 here.
    base = dict(size=32, style_size=32, content_layer="relu4_1", style_layers=LAYERS,
                style_layer_weights=(1.0,) * len(LAYERS), iterations=8, precision="fp32")
    base.update(kw)
    return GatysConfig(**base)


@pytest.mark.parametrize("optimizer,lr", [("lbfgs", 1.0), ("adam", 10.0)])
def test_texture_synthesis_lowers_gram_loss(encoder, synthetic_image, optimizer, lr):
    engine = Gatys(synthetic_image, _cfg(optimizer=optimizer, lr=lr), encoder=encoder)
    img, stats = engine.run(None, size=(32, 32))
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()
    assert 0 <= img.min() and img.max() <= 1
    assert stats.iterations == 8 and len(stats.loss) == 8
    assert stats.loss[-1] < 0.5 * stats.loss[0]


def test_texture_synthesis_is_deterministic(encoder, synthetic_image):
    a, _ = Gatys(synthetic_image, _cfg(iterations=2), encoder=encoder).run(None, size=(32, 32))
    b, _ = Gatys(synthetic_image, _cfg(iterations=2), encoder=encoder).run(None, size=(32, 32))
    torch.testing.assert_close(a, b)


def test_transfer_multiscale_and_colors(encoder, synthetic_image):
    content = synthetic_image.flip(-1)
    cfg = _cfg(size=64, levels=2, iterations=3, preserve_colors=True)
    img, stats = gatys.transfer(content, synthetic_image, cfg, encoder=encoder)
    assert img.shape == content.shape and stats.iterations == 6
    # original colours: chrominance equals the photo's
    torch.testing.assert_close(gatys.rgb_to_yuv(img)[:, 1:], gatys.rgb_to_yuv(content)[:, 1:], atol=0.02, rtol=0)


def test_yuv_round_trip():
    x = torch.rand(1, 3, 5, 5)
    torch.testing.assert_close(gatys.yuv_to_rgb(gatys.rgb_to_yuv(x)), x, atol=1e-4, rtol=0)


def test_config_validation():
    with pytest.raises(ConfigError, match="style_layer_weights"):
        GatysConfig(style_layer_weights=(1.0,)).validate()
    with pytest.raises(ConfigError, match="layer"):
        GatysConfig(content_layer="relu9_9").validate()
    with pytest.raises(ConfigError, match="levels"):
        GatysConfig(size=32, levels=3).validate()


def test_cli_rejects_bad_input(tmp_path, capsys):
    style = tmp_path / "style.png"
    style.write_bytes(b"not an image")
    assert gatys.main(["--style", str(style), "--out", str(tmp_path / "o.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not an image" in err and len(err.splitlines()) == 1
    assert gatys.main(["--style", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "not found" in capsys.readouterr().err
    assert gatys.main(["--style", str(style), "--out", str(tmp_path / "o.txt")]) == 2
    assert "image file name" in capsys.readouterr().err
    assert gatys.main(["--style", str(style), "--levels", "9"]) == 2
    assert "levels" in capsys.readouterr().err


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_fp32_for_lbfgs_and_follows_the_cpu_for_adam(monkeypatch, native):
    """L-BFGS's curvature pairs need fp32 gradients (bf16 L-BFGS diverged on real styles);
    Adam keeps what ``auto`` picks for the machine; an explicit choice is honoured."""
    from mgan import precision

    monkeypatch.delenv(precision.FORCE_NO_BF16, raising=False)
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    lbfgs, why = gatys.resolve_precision(GatysConfig(optimizer="lbfgs"), "cpu")
    assert lbfgs == "fp32" and "L-BFGS" in why
    adam = gatys.resolve_precision(GatysConfig(optimizer="adam"), "cpu")[0]
    assert adam == ("bf16" if native else "fp32")
    assert gatys.resolve_precision(GatysConfig(optimizer="lbfgs", precision="bf16"), "cpu")[0] == "bf16"
    engine = gatys.Gatys(torch.rand(1, 3, 32, 32), GatysConfig(size=32, style_size=32, precision="auto"), "cpu")
    assert engine.precision == "fp32"
