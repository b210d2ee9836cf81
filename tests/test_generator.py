"""MGAN's generator G (paper Sec. 3.2): both upsampling modes, receptive field, release round trip
and the checkerboard bound on trained generators (exact tiling of both modes: test_tiling.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import randomise_bn, smooth_image
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from mgan import decode, io, tiling
from mgan.config import ConfigError
from mgan.generator import Generator, GeneratorConfig, ResidualBlock, load_release
from mgan.metrics import checkerboard_score

MODES = ("deconv", "resize")
# dB. Measured (fp32, checkerboard_score): the 6 photos of ../shared/data/photo at 256 px score
# -0.7 ... +1.1; the same photos plus a faint 8 px pattern of amplitude 1/255 (one grey level)
# 1.5 ... 4.6; the shipped quick-config deconv G's decodes of them 6.9 ... 10.7. 3 dB (grid
# frequencies on average twice as strong as their neighbourhood) is ~2 dB above every photo
# and ~4 dB below every decode of that G.
CHECKERBOARD_BOUND = 3.0
# sha256 of the weights (tensor names and bytes, not the metadata: the model card in it may
# change) of mgan/assets/picasso.safetensors as shipped with issue #3 (quick config, 16 photos,
# deconv): its decodes score 6.9-10.7 dB; the retrained release that replaces it must pass the bound.
QUICK_RELEASE_SHA256 = "b68653824cb3767563faff802456a65c9d5dad6c4b7ed3a2d0bdec0b4cc8e21f"


def _weights_sha256(path: Path) -> str:
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def _small(upsample: str, in_channels: int = 16) -> GeneratorConfig:
    return GeneratorConfig(in_channels=in_channels, channels=(16, 8, 8), upsample=upsample)


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("upsample", MODES)
@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 5), (7, 2)])
def test_shapes_for_odd_sizes(upsample, h, w):
    G = Generator(_small(upsample))
    y = G(torch.randn(2, 16, h, w))
    assert y.shape == (2, 3, 8 * h, 8 * w) and G.upscale == 8


def test_resize_output_saturates_at_both_ends_and_maps_to_the_image_range():
    """A Tanh keeps [-1, 1] whatever comes before it, so the range alone proves nothing: driven
    into saturation, the output must reach both ends (the last layer is that Tanh, with no
    scale or shift after it), and to_image must map -1 -> 0 and 1 -> 1 linearly."""
    G = randomise_bn(Generator(_small("resize")))
    with torch.no_grad():
        G.net[-2].weight.mul_(1000)  # the last conv: drives the Tanh into saturation
    y = G(torch.randn(1, 16, 4, 6))
    assert torch.isfinite(y).all() and y.min() < -0.99 and y.max() > 0.99
    torch.testing.assert_close(G.to_image(torch.tensor([-1.0, 0.0, 1.0])), torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(G.to_image(y), (y + 1) / 2)


@pytest.mark.parametrize("upsample", MODES)
def test_same_seed_same_generator(upsample):
    x = torch.randn(1, 16, 3, 4)
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outs.append(Generator(_small(upsample)).eval()(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_resize_layers_are_nearest_upsample_then_3x3_conv_with_the_same_widths():
    deconv, resize = Generator(_small("deconv")), Generator(_small("resize"))
    kinds = [type(m).__name__ for m in resize.net]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", *["Upsample", "Conv2d", "BatchNorm2d", "ReLU"] * 2,
                     "Upsample", "Conv2d", "Tanh"]
    assert all(m.mode == "nearest" and m.scale_factor == 2 for m in resize.net if isinstance(m, nn.Upsample))
    widths = [(m.in_channels, m.out_channels) for m in resize.net if isinstance(m, nn.Conv2d)]
    assert widths == [(m.in_channels, m.out_channels) for m in deconv.net if isinstance(m, (nn.Conv2d,
                                                                                             nn.ConvTranspose2d))]


def test_deconv_keeps_the_shipped_parameter_names():
    """The paper's layout is unchanged, so releases from before ``upsample`` existed (the shipped
    one: no ``upsample`` key) load as deconv with every tensor in its place."""
    with safe_open(str(decode.DEFAULT_MODEL), framework="pt") as f:
        keys, cfg = set(f.keys()), json.loads(f.metadata()["config"])
    G, _ = load_release(decode.DEFAULT_MODEL)
    assert G.config.upsample == cfg.get("upsample", "deconv")
    with torch.device("meta"):  # names only: no need to allocate and initialise the full-width G
        names = {k for k in Generator(G.config).state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == names


def test_flat_features_decode_flat_only_with_resize():
    """Odena et al.'s argument: every output phase of nearest-x2 + conv sums the same weights, so a
    constant input gives a constant output (away from the zero-padded border) whatever the weights;
    a FS-conv's four phases have their own sub-kernels and give a periodic pattern."""
    x = torch.full((1, 16, 8, 8), 0.7)
    for upsample, flat in (("resize", True), ("deconv", False)):
        torch.manual_seed(0)
        y = randomise_bn(Generator(_small(upsample)))(x)[..., 24:40, 24:40]  # 3 cells from the border
        spread = (y - y.mean(dim=(-2, -1), keepdim=True)).abs().max().item()
        assert (spread < 1e-5) == flat, (upsample, spread)


@pytest.mark.parametrize("upsample", MODES)
def test_halo_cells_is_the_measured_receptive_field(upsample):
    """Perturb one input cell: only output pixels within halo_cells() cells of it change, and some at that distance."""
    torch.manual_seed(0)
    G = randomise_bn(Generator(_small(upsample, in_channels=4)))
    assert G.halo_cells() == tiling.G_HALO == _measured_reach(G, 9)


def _measured_reach(G: Generator, side: int) -> int:
    """Perturb each input cell of one column of a ``side``-cell square in turn: the furthest output
    cell (8 px) that changed, in cells from the perturbed one."""
    x = torch.randn(1, G.config.in_channels, side, side)
    base = G(x)
    reach = 0
    for i in range(side):
        x2 = x.clone()
        x2[..., i, side // 2] += 10
        rows = torch.nonzero((G(x2) - base).abs().amax(dim=(0, 1, 3)) > 0).flatten() // 8
        reach = max(reach, int((rows - i).abs().max()))
    return reach


def test_bad_upsample_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="upsample"):
        Generator(GeneratorConfig(upsample="bilinear"))
    G = Generator(_small("resize", in_channels=512))
    sd = {k: v for k, v in G.state_dict().items() if not k.endswith("num_batches_tracked")}
    cfg = {**json.loads(json.dumps(G.config.__dict__)), "upsample": "bilinear"}
    path = tmp_path / "bad.safetensors"
    path.write_bytes(save(sd, metadata={"format": "mgan-generator-v1", "config": json.dumps(cfg)}))
    with pytest.raises(io.InputError, match="does not match its config"):
        load_release(path)


# --------------------------------------------------------------------------- release and decode


def test_train_release_round_trip_through_decode_with_resize(tmp_path):
    """Train config -> G with resize upsampling -> train's release (fp16) -> decode."""
    from mgan.train import load_config, release  # noqa: PLC0415

    cfg = load_config(None, ["model.upsample=resize", "model.channels=[16, 8, 8]", "train.precision=fp32"], base={})
    assert cfg.model.upsample == "resize"
    with pytest.raises(ConfigError, match="model.upsample"):
        load_config(None, ["model.upsample=bilinear"], base={})
    torch.manual_seed(0)
    G = randomise_bn(Generator(cfg.model))
    trainer = SimpleNamespace(cfg=cfg, G=G, step=3, crops=[0] * 5, n_photo=5, n_crops=5, bf16=False, n_avg=0,
                              release_generator=lambda: G)
    style = io.save_image(smooth_image(9, 48, 64), tmp_path / "style.png")
    paths = SimpleNamespace(style=style, train=[Path("a.png")])
    path = release(trainer, tmp_path, paths, None, torch.device("cpu"))
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["upsample"] == "resize"
    G2, extra = load_release(path)
    assert G2.config == G.config and extra["experiment"]["model"]["upsample"] == "resize"
    x = smooth_image(3, 64, 80)
    assert decode.Decoder(path, device="cpu", tile=None).postprocess == "match"  # it carries the style's colours
    y = decode.Decoder(path, device="cpu", precision="fp32", tile=None, postprocess="none").decode(x)
    ref = decode.Decoder(G, device="cpu", precision="fp32", tile=None, fold_bn=False, postprocess="none").decode(x)
    assert y.shape == x.shape
    assert (y - ref).abs().max() < 5e-3  # fp16 weights in the release


def test_old_release_without_upsample_key_loads_as_deconv(tmp_path):
    torch.manual_seed(0)
    G = randomise_bn(Generator(_small("deconv", in_channels=512)))
    sd = {k: v for k, v in G.state_dict().items() if not k.endswith("num_batches_tracked")}
    cfg = {k: v for k, v in G.config.__dict__.items() if k != "upsample"}
    path = tmp_path / "old.safetensors"
    path.write_bytes(save(sd, metadata={"format": "mgan-generator-v1", "config": json.dumps(cfg)}))
    G2, _ = load_release(path)
    assert G2.config.upsample == "deconv"
    x = torch.randn(1, 512, 3, 3)
    assert torch.equal(G2(x), G(x))


# --------------------------------------------------------------------------- checkerboard bound


def test_trained_resize_generator_stays_under_the_checkerboard_bound(encoder):
    """Tiny G's fitted for 30 Adam steps (pixel loss, 4 smooth 64 px images), decoding an unseen
    image: resize-convolution stays under the bound, the paper's FS-convs do not (measured
    ~-1 dB and ~8 dB; 0 dB for the images themselves)."""
    photos = torch.cat([smooth_image(i) for i in range(4)])
    unseen = smooth_image(99)
    with torch.no_grad():
        feats, feat_unseen = encoder(photos)["relu4_1"], encoder(unseen)["relu4_1"]
    scores = {}
    for upsample in MODES:
        torch.manual_seed(0)
        G = Generator(GeneratorConfig(channels=(32, 16, 8), upsample=upsample))
        opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
        for _ in range(30):
            loss = (G(feats) - (photos * 2 - 1)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < 0.1  # it did learn to decode
        with torch.no_grad():
            scores[upsample] = checkerboard_score(G.to_image(G.eval()(feat_unseen)))
    assert abs(checkerboard_score(unseen)) < 2
    assert scores["resize"] < CHECKERBOARD_BOUND < scores["deconv"], scores


@pytest.mark.data
def test_shipped_generator_stays_under_the_checkerboard_bound(shared_data, request):
    model = decode.DEFAULT_MODEL
    if _weights_sha256(model) == QUICK_RELEASE_SHA256:
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="the shipped quick-config deconv G decodes with an 8 px checkerboard "
            "(6.9-10.7 dB on ../shared/data/photo at 256 px); issue #10 retrains it"))
    photo = io.load_image(sorted((shared_data / "photo").glob("*.jpg"))[0], max_side=256)
    y = decode.Decoder(model, device="cpu", precision="fp32", tile=None).decode(photo)
    assert checkerboard_score(photo) < 2
    assert checkerboard_score(y) < CHECKERBOARD_BOUND


# --------------------------------------------------------------------------- residual blocks


def test_residual_blocks_start_as_the_identity():
    """``blocks`` (not in the paper) puts residual blocks after the first conv: each is the identity
    until trained (its last BN's scale 0)."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(in_channels=16, channels=(16, 8, 8), upsample="resize", blocks=2))
    blocks = [m for m in G.net if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2 and list(G.net).index(blocks[0]) == 3
    x = torch.randn(1, 16, 5, 6)
    for mode in (G.train, G.eval):  # batch statistics and running ones alike
        mode()
        assert torch.equal(blocks[0](x), x)
    with torch.no_grad():
        blocks[0].branch[-1].weight.fill_(1.0)
    assert not torch.equal(blocks[0](x), x)  # trained, it is not


@pytest.mark.parametrize("blocks", [1, 2])
def test_halo_cells_with_residual_blocks_is_the_measured_receptive_field(blocks):
    torch.manual_seed(0)
    G = randomise_bn(Generator(GeneratorConfig(in_channels=4, channels=(16, 8, 8), upsample="resize", blocks=blocks)))
    for m in G.net:
        if isinstance(m, ResidualBlock):
            m.branch[-1].weight.data.fill_(1.0)  # as trained: the branch reads its neighbours
    assert G.halo_cells() == tiling.G_HALO + 2 * blocks == _measured_reach(G, 17)


def test_bad_block_count_is_rejected():
    for n in (-1, 9):
        with pytest.raises(ConfigError, match="blocks: must be 0 to 8"):
            GeneratorConfig(blocks=n).validate()
    for w in (0, 5000):
        with pytest.raises(ConfigError, match="block_width: must be in"):
            GeneratorConfig(blocks=1, block_width=w).validate()


def test_narrow_blocks_have_their_width_and_the_same_field():
    """``block_width``: the branch narrows to that many channels (the weights shrink in
    proportion), starts as the identity and reads as far as a full-width block."""
    torch.manual_seed(0)
    cfg = GeneratorConfig(in_channels=4, channels=(16, 8, 8), upsample="resize", blocks=2, block_width=4)
    G = Generator(cfg)
    blocks = [m for m in G.net if isinstance(m, ResidualBlock)]
    assert [tuple(m.branch[0].weight.shape) for m in blocks] == [(4, 16, 3, 3)] * 2
    assert [tuple(m.branch[3].weight.shape) for m in blocks] == [(16, 4, 3, 3)] * 2
    wide = sum(p.numel() for p in ResidualBlock(16).parameters())
    assert sum(p.numel() for p in blocks[0].parameters()) < wide / 3
    x = torch.randn(1, 16, 5, 6)
    assert torch.equal(blocks[0](x), x)
    randomise_bn(G)
    for m in blocks:
        m.branch[-1].weight.data.fill_(1.0)
    assert G.halo_cells() == tiling.G_HALO + 4 == _measured_reach(G, 17)
