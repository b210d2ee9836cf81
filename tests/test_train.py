"""MGAN training (paper Sec. 3.2): D/G shapes, D vs. a plain reference, losses, config errors,
and a tiny end-to-end run: MDAN -> crops -> train -> checkpoint -> exact resume -> release -> decode."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import make_tiny_experiment

from mgan import io
from mgan.data import CropSet
from mgan.discriminator import MGANDiscriminator
from mgan.generator import Generator, GeneratorConfig, load_release
from mgan.train import CropConfig, ExperimentConfig, TrainConfig, Trainer, load_config, main

# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("h,w,out", [(32, 32, (8, 8)), (25, 19, (6, 4)), (4, 4, (1, 1)), (33, 70, (8, 17))])
def test_mgan_d_shapes_and_ring(h, w, out):
    D = MGANDiscriminator(16, (8, 12), ring=1)
    s = D(torch.randn(2, 16, h, w))
    assert s.shape == (2, 1, *out)
    kept = (out[0] - 2) * (out[1] - 2) if min(out) > 2 else out[0] * out[1]
    assert D.masked(s).shape == (2, kept)


def test_mgan_d_paper_size_keeps_36_scores():
    D = MGANDiscriminator()  # relu3_1 of a 128x128 crop
    assert D.masked(D(torch.randn(2, 256, 32, 32))).shape == (2, 36)
    with pytest.raises(ValueError, match="too small"):
        D(torch.randn(1, 256, 3, 8))


def test_mgan_d_matches_plain_reference():
    """LReLU -> conv4x4/2 -> BN -> LReLU -> conv4x4/2 -> BN -> LReLU -> conv1x1, written with torch.nn.functional."""
    torch.manual_seed(0)
    D = MGANDiscriminator(6, (5, 7)).train()
    x = torch.randn(3, 6, 12, 10)
    net = D.net
    h = F.leaky_relu(x, 0.2)
    h = F.conv2d(h, net[1].weight, stride=2, padding=1)
    h = F.batch_norm(h, None, None, net[2].weight, net[2].bias, training=True)
    h = F.leaky_relu(h, 0.2)
    h = F.conv2d(h, net[4].weight, stride=2, padding=1)
    h = F.batch_norm(h, None, None, net[5].weight, net[5].bias, training=True)
    ref = F.conv2d(F.leaky_relu(h, 0.2), net[7].weight)
    torch.testing.assert_close(D(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h,w", [(5, 7), (1, 3), (16, 16)])
def test_paper_generator_odd_sizes(h, w):
    G = Generator(GeneratorConfig())
    y = G(torch.randn(2, 512, h, w))
    assert y.shape == (2, 3, 8 * h, 8 * w) and y.abs().max() <= 1


# --------------------------------------------------------------------------- losses


def _random_crops(k=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=g)
    t = torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=g)
    return CropSet(p, t, torch.zeros(k, 4, dtype=torch.int32), ["x"])


TINY_NET = dict(model=GeneratorConfig(channels=(16, 8, 8)))


def _tiny_cfg(**train):
    base = dict(batch=4, precision="fp32", d_hidden=(8, 8), feature_cache_mb=0)
    return ExperimentConfig(crops=CropConfig(size=32), **TINY_NET,
                            train=TrainConfig(**{**base, **train}))


def test_train_step_losses_match_their_definitions():
    """loss_pix = MSE in [-1, 1]; loss_d = hinge(real, +1) + hinge(fake, -1) over the masked maps,
    recomputed from copies of G and D taken before the step."""
    import copy

    crops = _random_crops()
    tr = Trainer(_tiny_cfg(feature_weight=1e-3), crops, progress=False)
    idx = tr.batch_indices(0)
    G0, D0 = copy.deepcopy(tr.G), copy.deepcopy(tr.D)
    photo, target = crops.batch(idx)
    with torch.no_grad():
        y = G0(tr.encoder(photo)["relu4_1"])
        fake = tr.encoder((y + 1) / 2)["relu3_1"]
        real = tr.encoder(target)["relu3_1"]
        loss_d = F.relu(1 - D0.masked(D0(real))).mean() + F.relu(1 + D0.masked(D0(fake))).mean()
        loss_pix = F.mse_loss(y, target * 2 - 1)
        loss_feat = F.mse_loss(fake, real)
    out = tr.train_step(idx)
    assert out["loss_pix"] == pytest.approx(loss_pix.item(), rel=1e-4)
    assert out["loss_d"] == pytest.approx(loss_d.item(), rel=1e-4)
    assert out["loss_feat"] == pytest.approx(loss_feat.item(), rel=1e-4)
    assert 0 <= out["loss_adv"] and all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert out["loss_g"] == pytest.approx(0.99 * out["loss_pix"] + 0.01 * out["loss_adv"] + 1e-3 * out["loss_feat"],
                                          rel=1e-5)


def test_pixel_loss_alone_fits_a_batch():
    crops = _random_crops(k=4)
    tr = Trainer(_tiny_cfg(adv_weight=0.0, lr=0.01), crops, progress=False)
    first = tr.train_step(tr.batch_indices(0))
    assert "loss_d" not in first and "loss_adv" not in first  # no D without an adversarial term
    for s in range(1, 15):
        last = tr.train_step(tr.batch_indices(s))
    assert last["loss_pix"] < first["loss_pix"]


def test_feature_cache_gives_the_same_step():
    crops = _random_crops()
    a = Trainer(_tiny_cfg(feature_cache_mb=64), crops, progress=False)
    b = Trainer(_tiny_cfg(feature_cache_mb=0), crops, progress=False)
    a.build_feature_cache()
    assert a.cache_in is not None and "relu3_1" in a.cache_real and b.cache_in is None
    ra, rb = a.train_step(a.batch_indices(0)), b.train_step(b.batch_indices(0))
    for k in ra:
        assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6)


# --------------------------------------------------------------------------- config / CLI errors


def test_config_defaults_are_the_papers():
    cfg = ExperimentConfig()
    t = cfg.train
    assert (t.lr, t.beta1, t.batch, t.epochs, t.pixel_weight, t.adv_weight) == (0.02, 0.5, 64, 5, 0.99, 0.01)
    assert (cfg.crops.size, cfg.crops.stride, cfg.model.channels) == (128, 64, (512, 256, 128))


@pytest.mark.parametrize("overrides,match", [
    (["train.lrr=1"], "unknown config key 'train.lrr'"),
    (["train.batch=abc"], "train.batch: expected an integer"),
    (["train.lr=-1"], "train.lr: must be > 0"),
    (["model.channels=[64, 32]"], "model.channels"),
    (["train.precision=fp16"], "precision"),
    (["crops.size=100"], "crops.size"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, capsys, overrides, match):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    args = [str(cfg), "--data-root", str(tmp_path), "--outdir", str(tmp_path / "runs")]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_missing_inputs_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    assert main([str(cfg), "--data-root", str(tmp_path / "nope")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    """A data folder (style, 1 warm-up, 3 training and 2 sample photos, 64 px) and a tiny config."""
    root = tmp_path_factory.mktemp("mgan_train")
    return root, make_tiny_experiment(root)


def _latest(outdir: Path, number: int) -> Path:
    return next(outdir.glob(f"{number:05d}-tiny"))


def test_end_to_end_resume_release_decode(tiny_project, capsys):
    root, cfg = tiny_project
    out = root / "runs"
    common = ["--outdir", str(out), "--no-progress", "--threads", "2"]

    # dry run: validates and plans, writes nothing
    assert main([str(cfg), "--dry-run", *common, "--set", "train.max_steps=4"]) == 0
    assert "stage 2 crops" in capsys.readouterr().out and not out.exists()

    # uninterrupted: 4 steps
    assert main([str(cfg), *common, "--set", "train.max_steps=4"]) == 0
    full = _latest(out, 0)
    assert sorted(p.name for p in (full / "samples").iterdir()) == [f"step-{s:06d}.png" for s in (0, 2, 4)]
    rows = [yaml.safe_load(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("loss_adv" in r for r in rows)

    # same command again: already done, nothing new
    assert main([str(cfg), *common, "--set", "train.max_steps=4"]) == 0
    assert "already done" in capsys.readouterr().out and len(list(out.glob("0*-tiny"))) == 1

    # 2 steps, then resume to 4: same weights, bit for bit (fp32, fixed seed, cached stages reused)
    assert main([str(cfg), *common, "--set", "train.max_steps=2"]) == 0
    half = _latest(out, 1)
    assert main(["--resume", str(half), *common, "--set", "train.max_steps=4"]) == 0
    a = io.load_checkpoint(full / "checkpoint-latest.pt")
    b = io.load_checkpoint(half / "checkpoint-latest.pt")
    assert a["step"] == b["step"] == 4
    for net in ("G", "D"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), f"{net}.{k} differs after resume"
    for k, v in a["opt_g"]["state"][0].items():
        assert torch.equal(v, b["opt_g"]["state"][0][k])
    rows = [yaml.safe_load(line) for line in (half / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]

    # release -> decode
    rel = full / "generator.safetensors"
    G, extra = load_release(rel)
    assert extra["steps"] == 4 and extra["style"] == "style.png"
    from mgan import zoo  # the release's model card: what training knows, and no path of this machine

    card = zoo.read_card(rel)
    assert set(zoo.TRAINING_FIELDS) <= set(card) and card["steps"] == 4 and card["photos"] == 3
    assert card["wall_time_s"] > 0 and zoo.absolute_paths({"card": card, "extra": extra}) == []
    assert (full / "decoded" / "t0.png").is_file()
    from mgan.decode import Decoder

    photo = io.load_image(root / "data" / "test" / "t0.png")
    y = Decoder(rel, device="cpu", precision="fp32").decode(photo)
    assert y.shape == photo.shape and torch.isfinite(y).all() and 0 <= y.min() and y.max() <= 1
    # the release decodes like the trained G in eval mode (fp16 weights: small differences)
    cfg_obj = load_config(full / "config.yaml")
    tr = Trainer(cfg_obj, _random_crops(k=8), progress=False)
    tr.G.load_state_dict(a["G"])
    ref = tr.generate(tr.encoder(photo)["relu4_1"], "eval")
    assert (ref - y).abs().mean() < 1e-2
