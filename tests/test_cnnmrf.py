"""CNNMRF: NCC matching on a constructed example, a tiny pyramid run, config and CLI errors."""

import pytest
import torch
from PIL import Image

from mgan import cnnmrf, losses, patches
from mgan.cnnmrf import CNNMRF, CNNMRFConfig
from mgan.config import ConfigError


def test_matching_picks_the_planted_patch():
    """A map tiled with (rescaled) copies of known style patches matches each copy to its source."""
    g = torch.Generator().manual_seed(0)
    style = torch.randn(1, 8, 9, 9, generator=g)
    sp = patches.extract_patches(style, 3, 1)  # 49 candidate patches, most overlapping
    planted = [5, 0, 48, 23]  # style patch index for each 3x3 block of the synthesised map
    scales = [1.0, 0.2, 7.0, 3.0]  # NCC ignores the patch's energy
    feat = torch.zeros(1, 8, 6, 6)
    for k, (j, s) in enumerate(zip(planted, scales, strict=True)):
        r, c = 3 * (k // 2), 3 * (k % 2)
        feat[0, :, r : r + 3, c : c + 3] = s * sp[j]
    q = patches.extract_patches(feat, 3, 3)  # exactly the four planted blocks
    idx = patches.match_ncc(q, patches.normalize_patches(sp), chunk=10)
    assert idx.tolist() == planted
    # and the MRF loss is zero when the planted copies are exact (scale 1)
    exact = torch.cat([sp[j].unsqueeze(0) for j in planted])
    feat1 = torch.cat([torch.cat([exact[0], exact[1]], 2), torch.cat([exact[2], exact[3]], 2)], 1).unsqueeze(0)
    loss = losses.mrf_loss(feat1, patches.normalize_patches(sp), sp, size=3, stride=3)
    assert loss.item() < 1e-8


def _cfg(**kw) -> CNNMRFConfig:
    base = dict(size=48, style_size=48, levels=1, iterations=4, content_layer="relu4_1", precision="fp32",
                angles=(0.0, 10.0), scales=(1.0,))
    base.update(kw)
    return CNNMRFConfig(**base)


def test_tiny_run_lowers_energy(encoder, synthetic_image):
    content = synthetic_image[..., :48, :48].flip(-1)
    engine = CNNMRF(synthetic_image, _cfg(), encoder=encoder)
    img, stats = engine.run(content)
    assert img.shape == content.shape and torch.isfinite(img).all()
    assert stats.iterations == 4 and stats.loss[-1] < stats.loss[0]
    pool = engine.style_pool(1.0)
    raw, filters = pool["relu3_1"]
    assert raw.shape[1:] == (256, 3, 3) and filters.shape == (raw.shape[0], 256 * 9)
    torch.testing.assert_close(filters.float().norm(dim=1), torch.ones(raw.shape[0]), atol=1e-3, rtol=0)


def test_pyramid_and_texture_mode(encoder, synthetic_image):
    img, stats = cnnmrf.synthesize(synthetic_image, _cfg(size=48, levels=2, iterations=1), size=(48, 48),
                                   encoder=encoder)
    assert img.shape == (1, 3, 48, 48) and stats.iterations == 2


def test_config_validation():
    with pytest.raises(ConfigError, match="coarsest"):
        CNNMRFConfig(size=64, levels=3).validate()
    with pytest.raises(ConfigError, match="mrf_weights"):
        CNNMRFConfig(mrf_weights=(1e-4,)).validate()


def test_cli_rejects_bad_input(tmp_path, capsys):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (12, 12), (128, 64, 32)).save(tiny)
    assert cnnmrf.main(["--style", str(tiny), "--out", str(tmp_path / "o.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "too small" in err and len(err.splitlines()) == 1
    out = str(tmp_path / "o.png")
    assert cnnmrf.main(["--style", str(tiny), "--size", "64", "--levels", "3", "--out", out]) == 2
    assert "coarsest" in capsys.readouterr().err
    assert cnnmrf.main(["--style", str(tmp_path / "none.jpg"), "--out", out]) == 2
    assert "not found" in capsys.readouterr().err
