"""The MGAN training loop (mgan.training.trainer, paper Sec. 3.2): losses against their definitions,
the feature cache, the data order, the checkpoint dict, sample grids, and the fp16-safe release copy."""

import copy

import pytest
import torch
import torch.nn.functional as F

from mgan.data import CropSet, epoch_order
from mgan.errors import ConfigError, InputError
from mgan.generator import Generator, GeneratorConfig
from mgan.io import load_checkpoint, make_grid
from mgan.training.config import CropConfig, ExperimentConfig, NoiseConfig, TrainConfig
from mgan.training.release import fp16_safe
from mgan.training.trainer import CHECKPOINT_FORMAT, Samples, Trainer, fit, sample_grid


def _random_crops(k=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=g)
    t = torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=g)
    return CropSet(p, t, torch.zeros(k, 4, dtype=torch.int32), ["x"])


TINY_NET = dict(model=GeneratorConfig(channels=(16, 8, 8)))


def _tiny_cfg(noise=None, **train):
    base = dict(batch=4, precision="fp32", d_hidden=(8, 8), feature_cache_mb=0)
    return ExperimentConfig(crops=CropConfig(size=32), **TINY_NET,
                            train=TrainConfig(**{**base, **train}), noise=noise or NoiseConfig())


# --------------------------------------------------------------------------- one step


def test_train_step_losses_match_their_definitions():
    """loss_pix = MSE in [-1, 1]; loss_d = hinge(real, +1) + hinge(fake, -1) over the masked maps,
    recomputed from copies of G and D taken before the step."""
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


def test_gram_term_matches_its_definition_and_falls():
    """loss_gram = sum over gram_layers of the relative Gram distance of each crop to its own
    target (squared); with it alone G moves its crops' second moments toward the targets'."""
    crops = _random_crops(k=4)
    layers = ("relu1_1", "relu2_1")
    tr = Trainer(_tiny_cfg(pixel_weight=0.0, adv_weight=0.0, gram_weight=1.0, gram_layers=layers, lr=0.01),
                 crops, progress=False)
    idx = tr.batch_indices(0)
    photo, target = crops.batch(idx)
    with torch.no_grad():
        y = copy.deepcopy(tr.G)(tr.encoder(photo)["relu4_1"])
        fake, real = tr.encoder((y + 1) / 2, list(layers)), tr.encoder(target, list(layers))
    ref = 0.0
    for n in layers:
        g, a = fake[n].flatten(2), real[n].flatten(2)
        g, a = g @ g.transpose(1, 2), a @ a.transpose(1, 2)  # the C H W normalisation cancels
        ref += (((g - a) ** 2).sum((1, 2)) / (a**2).sum((1, 2))).mean().item()
    first = tr.train_step(idx)
    assert "loss_d" not in first and first["loss_gram"] == pytest.approx(ref, rel=1e-4)
    assert first["loss_g"] == pytest.approx(first["loss_gram"], rel=1e-6)
    for _ in range(15):
        last = tr.train_step(idx)
    assert last["loss_gram"] < 0.5 * first["loss_gram"]


@pytest.mark.parametrize("overrides, match", [
    (dict(gram_weight=-1.0), "gram_weight"),
    (dict(gram_layers=()), "gram_layers"),
    (dict(gram_layers=("relu9_1",)), "gram_layers"),
    (dict(pixel_weight=0.0, adv_weight=0.0), "all 0"),
])
def test_gram_options_are_validated(overrides, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**overrides).validate()


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


def test_batches_walk_each_epochs_order_and_drop_the_last_partial_batch():
    tr = Trainer(_tiny_cfg(batch=3), _random_crops(k=8), progress=False)
    assert tr.steps_per_epoch == 2 and tr.total_steps == 5 * 2
    for epoch in (0, 1):
        order = epoch_order(8, 0, epoch)
        assert torch.equal(torch.cat([tr.batch_indices(2 * epoch), tr.batch_indices(2 * epoch + 1)]), order[:6])
    with pytest.raises(InputError, match="fewer than one batch"):
        Trainer(_tiny_cfg(batch=9), _random_crops(k=8), progress=False)


def test_noise_crops_join_the_photo_batches_from_their_start_step():
    """Noise pairs: from noise.start_step on, per_batch noise crops (indices >= n_photo) follow the
    step's photo crops, which stay those of a run without noise; the noise crops walk their own epochs."""
    noise_cfg = NoiseConfig(count=1, per_batch=2, start_step=3)
    noise = _random_crops(k=5, seed=1)
    tr = Trainer(_tiny_cfg(noise_cfg, batch=3), _random_crops(k=8), progress=False, noise=noise)
    plain = Trainer(_tiny_cfg(batch=3), _random_crops(k=8), progress=False)
    assert tr.n_photo == 8 and tr.n_crops == 13 and tr.steps_per_epoch == plain.steps_per_epoch == 2
    for step in range(3):
        assert torch.equal(tr.batch_indices(step), plain.batch_indices(step))
    seen = []
    for step in range(3, 7):  # 5 noise crops, 2 a step: 2 steps an epoch
        idx = tr.batch_indices(step)
        assert torch.equal(idx[:3], plain.batch_indices(step)) and len(idx) == 5 and (idx[3:] >= 8).all()
        seen.append(idx[3:] - 8)
    for epoch in (0, 1):
        assert torch.equal(torch.cat(seen[2 * epoch : 2 * epoch + 2]), epoch_order(5, 0, epoch)[:4])
    # crop_batch returns each crop from its own set, in the batch's order
    idx = torch.tensor([9, 2, 12])
    photo, target = tr.crop_batch(idx)
    assert torch.equal(photo[0], noise.batch(torch.tensor([1]))[0][0]) and torch.equal(target[2], noise.batch(
        torch.tensor([4]))[1][0]) and torch.equal(photo[1], tr.crops.batch(torch.tensor([2]))[0][0])


def test_a_step_with_noise_crops_trains_on_them_too():
    """The pixel loss of a step with noise crops is the MSE over photo and noise crops alike; the
    feature cache covers the noise crops; a step is reproducible for a seed."""
    noise_cfg = NoiseConfig(count=1, per_batch=2)
    crops, noise = _random_crops(k=8), _random_crops(k=4, seed=1)
    tr = Trainer(_tiny_cfg(noise_cfg, adv_weight=0.0), crops, progress=False, noise=noise)
    idx = tr.batch_indices(0)
    photo, target = tr.crop_batch(idx)
    with torch.no_grad():
        y = copy.deepcopy(tr.G)(tr.encoder(photo)["relu4_1"])
    out = tr.train_step(idx)
    assert len(idx) == 6 and out["loss_pix"] == pytest.approx(F.mse_loss(y, target * 2 - 1).item(), rel=1e-4)
    # with D: the cached real relu3_1 features of the noise crops give the uncached step
    cached = Trainer(_tiny_cfg(noise_cfg, feature_cache_mb=64), crops, progress=False, noise=noise)
    plain = Trainer(_tiny_cfg(noise_cfg), crops, progress=False, noise=noise)
    cached.build_feature_cache()
    assert cached.cache_in.shape[0] == cached.cache_real["relu3_1"].shape[0] == 12
    ra, rb = cached.train_step(idx), plain.train_step(idx)
    assert ra["loss_pix"] == pytest.approx(out["loss_pix"], rel=1e-4)
    for k in ("loss_d", "loss_adv", "loss_g"):
        assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), k
    with pytest.raises(InputError, match="no noise crops were given"):
        Trainer(_tiny_cfg(noise_cfg), crops, progress=False)
    with pytest.raises(InputError, match="only 4 noise crops, fewer than one batch of 5"):
        Trainer(_tiny_cfg(NoiseConfig(count=1, per_batch=5)), crops, progress=False, noise=noise)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_dict_keeps_its_format():
    """Runs in progress resume from these keys: renaming one breaks every existing checkpoint."""
    tr = Trainer(_tiny_cfg(), _random_crops(), progress=False)
    state = tr.state_dict()
    assert set(state) == {"format", "step", "epoch", "steps_per_epoch", "total_steps", "num_crops", "num_noise_crops",
                          "noise_schedule", "world_size", "G", "G_avg", "n_avg", "D", "opt_g", "opt_d", "rng", "config"}
    assert state["format"] == CHECKPOINT_FORMAT == "mgan-train-v1"
    tr.train_step(tr.batch_indices(0))
    tr.step = 1
    other = Trainer(_tiny_cfg(), _random_crops(), progress=False)
    other.load_state_dict(tr.state_dict())
    assert other.step == 1 and all(torch.equal(v, tr.G.state_dict()[k]) for k, v in other.G.state_dict().items())
    with pytest.raises(InputError, match="not an mgan training checkpoint"):
        other.load_state_dict({**state, "format": "x"})
    with pytest.raises(InputError, match="trained on 8 crops"):
        Trainer(_tiny_cfg(), _random_crops(k=12), progress=False).load_state_dict(state)

    def noisy(**noise):
        return Trainer(_tiny_cfg(NoiseConfig(count=1, **{"per_batch": 2, **noise})), _random_crops(), progress=False,
                       noise=_random_crops(k=4))

    old = {k: v for k, v in tr.state_dict().items() if k not in ("num_noise_crops", "noise_schedule")}  # before noise
    other.load_state_dict(old)
    noisy(start_step=1).load_state_dict(old)  # step 1: no noise crop has been used yet, so it may go on with them
    with pytest.raises(InputError, match="step 1 was trained with 0 noise crops, 0 a step from step 0; this run "
                                         "has 4, 2 from 0"):
        noisy().load_state_dict(old)
    a = noisy()
    a.train_step(a.batch_indices(0))
    a.step = 1
    noisy().load_state_dict(a.state_dict())
    with pytest.raises(InputError, match="this run has 4, 3 from 0"):  # the noise batches would change
        noisy(per_batch=3).load_state_dict(a.state_dict())


def test_weight_average_is_the_mean_of_its_steps_and_resumes_exactly(tmp_path):
    """``train.average_start`` (SWA): the release's G is the mean of G's states at steps 2, 4
    and 6 (start 2, every 2, the last step), BN statistics included; a run resumed from step 3
    ends with the same average; a checkpoint past the start without one is refused."""
    cfg = _tiny_cfg(max_steps=6, average_start=2, average_every=2, snapshot_every=1, log_every=1)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    a = Trainer(cfg, _random_crops(), progress=False)
    assert fit(a, tmp_path / "a", None, progress=False)
    assert a.n_avg == 3
    states = [load_checkpoint(tmp_path / "a" / f"checkpoint-{s:06d}.pt")["G"] for s in (2, 4, 6)]
    avg = a.release_generator().state_dict()
    moved = 0
    for k, v in avg.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, sum(st[k] for st in states) / 3, atol=1e-6, rtol=1e-5)
            moved += not torch.equal(v, states[-1][k])
    assert moved > 0  # the average is not the last step's G
    assert all(torch.equal(v, states[-1][k]) for k, v in a.G.state_dict().items())  # G itself trains on unchanged

    b = Trainer(cfg, _random_crops(), progress=False)
    b.load_state_dict(load_checkpoint(tmp_path / "a" / "checkpoint-000003.pt"))
    assert b.n_avg == 1
    assert fit(b, tmp_path / "b", None, progress=False)
    assert b.n_avg == 3
    for k, v in b.release_generator().state_dict().items():
        assert torch.equal(v, avg[k]), k

    plain = Trainer(_tiny_cfg(max_steps=6), _random_crops(), progress=False)
    plain.load_state_dict(load_checkpoint(tmp_path / "a" / "checkpoint-000003.pt"))  # averaging off: G alone
    assert plain.G_avg is None and plain.n_avg == 0
    with pytest.raises(InputError, match="step 3 holds no weight average, but train.average_start is 2"):
        b.load_state_dict(plain.state_dict())
    with pytest.raises(InputError, match="average_start 7 is past the run's last step 2"):  # 1 epoch of 2 steps
        Trainer(_tiny_cfg(epochs=1, average_start=7), _random_crops(), progress=False)


@pytest.mark.parametrize("overrides, match", [
    (dict(average_every=0), "average_every"),
    (dict(average_start=0), "average_start"),
    (dict(average_start=7, max_steps=6), "average_start"),
])
def test_weight_average_options_are_validated(overrides, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**overrides).validate()


# --------------------------------------------------------------------------- samples and release


def test_make_grid_centres_each_image_in_its_cell():
    a, b = torch.zeros(1, 3, 4, 6), torch.full((1, 3, 2, 2), 0.5)
    grid = make_grid([[a, b], [b]], pad=1)
    assert grid.shape == (1, 3, 1 + 4 + 1 + 2 + 1, 1 + 6 + 1 + 2 + 1)
    assert torch.equal(grid[..., 1:5, 1:7], a) and torch.equal(grid[..., 6:8, 3:5], b)  # b centred under a
    assert torch.equal(grid[..., 2:4, 8:10], b)  # b centred in row 0's taller cell
    assert grid[..., 0, :].eq(1).all() and grid[..., 1, 8:10].eq(1).all() and grid[..., 4, 8:10].eq(1).all()


def test_sample_grid_rows():
    tr = Trainer(_tiny_cfg(), _random_crops(), progress=False)
    photos = [torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40)]
    feats = [tr.encoder(p)["relu4_1"] for p in photos]
    with_mdan = sample_grid(tr, Samples(["a", "b"], photos, feats, [photos[0], None]))
    without = sample_grid(tr, Samples(["a", "b"], photos, feats, [None, None]))
    pad = 4
    assert with_mdan.shape[-2] == 4 * 32 + 5 * pad and without.shape[-2] == 3 * 32 + 4 * pad
    assert with_mdan.shape[-1] == 32 + 40 + 3 * pad and tr.G.training  # sampling leaves G in train mode


@pytest.mark.parametrize("blocks", [0, 1])
def test_fp16_safe_copy_computes_the_same_and_fits_fp16(blocks):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(in_channels=8, channels=(8, 8, 8), blocks=blocks))
    for m in G.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(1e7)
            m.running_mean.normal_(0, 100)
            m.weight.data.fill_(1.0)  # the residual blocks' last BN too: not the identity
    x = torch.randn(1, 8, 4, 4) * 300
    safe = fp16_safe(G)
    assert safe is not G and G.net[1].running_var.max() == 1e7  # G itself unchanged
    assert max(float(m.running_var.max()) for m in safe.modules() if isinstance(m, torch.nn.BatchNorm2d)) <= 2**14
    torch.testing.assert_close(safe.eval()(x), G.eval()(x), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(safe.half()(x.half())).all()
