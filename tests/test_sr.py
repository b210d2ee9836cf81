"""Super-resolution (Johnson et al. 2016 Sec. 4.2): the sr network's shapes, both training losses,
PSNR / SSIM / luminance against plain formulas, and the sr_eval CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from conftest import image_size, smooth_image

from mgan import io, metrics, perceptual, sr_eval
from mgan.config import ConfigError
from mgan.errors import InputError
from mgan.perceptual import PerceptualConfig
from mgan.sr_eval import SREvalConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _sr_cfg(**kw) -> PerceptualConfig:
    # A small net and a tap of the session encoder (relu2_1 stands in for relu2_2).
    base = dict(image_size=32, batch_size=2, steps=12, lr=5e-3, content_layer="relu2_1", base_channels=8,
                residual_blocks=1, precision="fp32", log_every=1, sample_every=1000, checkpoint_every=1000)
    base.update(kw)
    return PerceptualConfig.for_task("sr", **base)


def _photos(folder, n=3, h=64, w=64):
    for i in range(n):
        io.save_image(smooth_image(10 + i, h, w), folder / f"p{i}.png")
    return io.list_images(folder)


# ---------------------------------------------------------------------------- network and losses


@pytest.mark.parametrize("upscale", [2, 4, 8])
def test_sr_network_upscales_exactly(upscale):
    net = perceptual.build_network(PerceptualConfig.for_task("sr", upscale=upscale, base_channels=4,
                                                             residual_blocks=1, image_size=32))
    assert net.scale == upscale and net.multiple == 1  # no stride-2 convs: any input side works
    assert net(torch.rand(2, 3, 5, 7)).shape == (2, 3, 5 * upscale, 7 * upscale)
    assert perceptual.degrade(torch.rand(1, 3, 8 * 5, 8 * 7), upscale).shape == (1, 3, 8 * 5 // upscale, 8 * 7 // upscale)
    # the first 9x9 conv reflection-pads by 4: a 4 px side is one clear InputError, not a traceback
    with pytest.raises(InputError, match="too small"):
        perceptual.apply(net, torch.rand(1, 3, 4, 7))
    assert SREvalConfig(scale=upscale).min_side // upscale >= 5  # sr_eval never feeds it one


def test_sr_skip_starts_as_bicubic_and_old_checkpoints_load_without_it(tmp_path):
    cfg = PerceptualConfig.for_task("sr", upscale=4, base_channels=4, residual_blocks=1, image_size=32)
    assert cfg.sr_skip  # new sr runs predict a residual over bicubic
    torch.manual_seed(0)
    net = perceptual.build_network(cfg).eval()
    x = torch.rand(1, 3, 6, 9)
    bicubic = torch.nn.functional.interpolate(x, size=(24, 36), mode="bicubic", align_corners=False)
    assert torch.equal(net(x), bicubic)  # zero-initialised residual: exactly bicubic before training
    with pytest.raises(ConfigError, match="sr_skip"):
        PerceptualConfig.for_task("style", sr_skip=True)
    # a checkpoint from before the option (no sr_skip key) is Johnson et al.'s plain network
    plain = PerceptualConfig.for_task("sr", upscale=4, base_channels=4, residual_blocks=1, image_size=32, sr_skip=False)
    torch.manual_seed(0)
    old_net = perceptual.build_network(plain)
    path = perceptual.save_model(old_net, plain, tmp_path / "old.pt")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["sr_skip"]
    torch.save(ckpt, path)
    loaded, loaded_cfg = perceptual.load_model(path)
    assert not loaded_cfg.sr_skip and not loaded.skip
    assert torch.equal(loaded(x), old_net.eval()(x))


def test_bundled_sr4_network_upscales_and_keeps_the_photo(tmp_path):
    """The shipped x4 network (mgan/assets/perceptual_sr4.pt) loads by name, upscales exactly,
    and stays close to the photo: a network that lost its colours (as the plain instance-
    normalised one did, 8 dB under bicubic) fails the PSNR check."""
    net, cfg = perceptual.load_model("sr4")
    assert (cfg.task, cfg.upscale, cfg.loss, net.skip) == ("sr", 4, "perceptual", True)
    gt = smooth_image(30, 96, 128)
    lr = perceptual.degrade(gt, 4)
    out = perceptual.apply(net, lr, precision="fp32")
    assert out.shape == gt.shape and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    assert perceptual.resolve_checkpoint(tmp_path / "sr4.pt") == tmp_path / "sr4.pt"  # paths stay paths


@pytest.mark.data
def test_bundled_sr4_network_is_near_bicubic_psnr_on_a_photo(shared_data):
    """On a real photo the perceptual network trades a little PSNR for sharper edges (measured
    over 16 photos: 0.3 dB under bicubic); the plain net that lost the photo's colours was 8 dB under."""
    net, _ = perceptual.load_model("sr4")
    gt = io.load_image(shared_data / "photo" / "tubingen.jpg", max_side=256)
    gt = gt[..., : gt.shape[-2] // 4 * 4, : gt.shape[-1] // 4 * 4]
    lr = perceptual.degrade(gt, 4)
    out = sr_eval.as_saved(perceptual.apply(net, lr, precision="fp32"))
    bicubic = sr_eval.as_saved(sr_eval.bicubic(lr, 4))
    assert metrics.psnr(out, gt, border=4) > metrics.psnr(bicubic, gt, border=4) - 1.5


def test_loss_option_defaults_and_validation():
    assert PerceptualConfig.for_task("sr").loss == "perceptual"
    assert PerceptualConfig.for_task("sr").tv_weight == 1e-6
    assert PerceptualConfig.for_task("sr", loss="mse").tv_weight == 0.0  # the plain pixel baseline
    assert PerceptualConfig.for_task("sr", loss="mse", tv_weight=1e-7).tv_weight == 1e-7  # unless asked
    with pytest.raises(ConfigError, match="loss: 'mse' is for task sr only"):
        PerceptualConfig.for_task("style", loss="mse")
    with pytest.raises(ConfigError, match="loss"):
        PerceptualConfig(task="sr", loss="l1").validate()
    assert perceptual.PerceptualLoss(_sr_cfg(loss="mse"), None, torch.device("cpu")).encoder is None  # no VGG


def test_pixel_loss_is_the_mse_of_0_1_images():
    cfg = _sr_cfg(loss="mse", content_weight=2.0)
    out, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    terms = perceptual.PerceptualLoss(cfg, None, torch.device("cpu"))(out, target)
    assert set(terms) == {"pixel"}
    torch.testing.assert_close(terms["pixel"], 2.0 * ((out - target) ** 2).sum() / out.numel())


@pytest.mark.parametrize("loss", ["perceptual", "mse"])
def test_both_losses_lower_the_training_loss(tmp_path, encoder, loss):
    (tmp_path / "photos").mkdir()
    files = _photos(tmp_path / "photos")
    cfg = _sr_cfg(loss=loss)
    net, hist = perceptual.train(cfg, files, None, None, encoder=encoder)
    assert len(hist) == cfg.steps and all(math.isfinite(h["loss"]) for h in hist)
    assert ("pixel" in hist[0]) == (loss == "mse") and ("content" in hist[0]) == (loss == "perceptual")
    losses = [h["loss"] for h in hist]
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses
    out = perceptual.apply(net, perceptual.degrade(smooth_image(3, 32, 32), 4))
    assert out.shape == (1, 3, 32, 32)


def test_cli_sr_mse_run_is_named_apart_and_a_resume_keeps_its_loss(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    _photos(photos, 2)
    root = tmp_path / "runs"
    small = ["--task", "sr", "--data", str(photos), "--runs", str(root), "--device", "cpu",
             "--set", "image_size=32", "--set", "batch_size=1", "--set", "base_channels=4",
             "--set", "residual_blocks=1", "--set", "precision=fp32", "--set", "log_every=1",
             "--set", "sample_every=1000", "--set", "checkpoint_every=2"]
    assert perceptual.main(["train", *small, "--loss", "mse", "--steps", "2"]) == 0
    run = root / "00000-perceptual-sr4-mse"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["loss"] == "mse" and saved["tv_weight"] == 0.0
    assert perceptual.main(["train", *small, "--steps", "4", "--resume", str(run / "checkpoint.pt")]) == 0
    assert perceptual.load_model(run / "final.pt")[1].loss == "mse"
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    capsys.readouterr()
    # a resume cannot switch objectives, and the style task has no pixel loss: one line each
    assert perceptual.main(["train", *small, "--loss", "perceptual", "--steps", "6",
                            "--resume", str(run / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "keeps its loss" in err and len(err.splitlines()) == 1
    assert perceptual.main(["train", "--data", str(photos), "--style", str(photos / "p0.png"), "--loss", "mse",
                            "--runs", str(root), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "for task sr only" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in root.iterdir()) == ["00000-perceptual-sr4-mse"]


def test_train_help_shows_both_losses_and_the_evaluation(capsys):
    with pytest.raises(SystemExit) as exc:
        perceptual.main(["train", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "--task sr --upscale 4 --data" in out and "--loss mse --data" in out and "python -m mgan.sr_eval" in out


# ---------------------------------------------------------------------------- psnr, ssim, luminance


def test_luminance_is_bt601_y():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.5, 0.9]]).T.reshape(1, 3, 1, 4)
    y = metrics.luminance(rgb).flatten()
    r, g, b = rgb[0, :, 0].double()
    torch.testing.assert_close(y, (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255)
    assert y[0].item() == pytest.approx(235 / 255) and y[1].item() == pytest.approx(16 / 255)
    one = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(metrics.luminance(one), one.double())  # one channel: taken as Y already


def test_psnr_of_a_constant_offset_has_a_closed_form():
    x = 0.2 + 0.5 * torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    c = 0.04
    got = metrics.psnr(x, x + c)
    dy = c * (65.481 + 128.553 + 24.966) / 255  # an RGB offset c moves Y by c * 219 / 255
    torch.testing.assert_close(got, torch.full((2,), -20 * math.log10(dy), dtype=torch.float64))
    torch.testing.assert_close(metrics.psnr(x * 255, (x + c) * 255, data_range=255.0), got)
    assert math.isinf(metrics.psnr(x, x)[0].item())
    framed = x.clone()
    framed[..., :3, :] = 0.0  # changed only inside a 3 px border
    assert math.isfinite(metrics.psnr(x, framed)[0].item()) and math.isinf(metrics.psnr(x, framed, border=3)[0].item())


def _ssim_reference(a: torch.Tensor, b: torch.Tensor, L: float = 1.0) -> float:
    """SSIM of two ``[H, W]`` images written out window by window (Wang et al. 2004, Eqs. 13-17)."""
    g = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    w = torch.tensor([[gi * gj for gj in g] for gi in g], dtype=torch.float64)
    w = w / w.sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11].double(), b[i : i + 11, j : j + 11].double()
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))).item())
    return sum(vals) / len(vals)


def test_ssim_matches_a_window_by_window_computation():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(1, 1, 14, 13, generator=gen)
    b = (a + 0.2 * torch.rand(1, 1, 14, 13, generator=gen)).clamp(0, 1)
    assert metrics.ssim(a, b).item() == pytest.approx(_ssim_reference(a[0, 0], b[0, 0]), rel=1e-9)
    # SSIM is unchanged when both images and L are scaled together
    assert metrics.ssim(255 * a.double(), 255 * b.double(), data_range=255.0).item() == pytest.approx(metrics.ssim(a, b).item(), rel=1e-9)
    # on RGB it is the SSIM of the luminance, border cropped
    rgb_a, rgb_b = smooth_image(1, 24, 26), smooth_image(2, 24, 26)
    ya, yb = metrics.luminance(rgb_a)[0, 0, 2:-2, 2:-2], metrics.luminance(rgb_b)[0, 0, 2:-2, 2:-2]
    assert metrics.ssim(rgb_a, rgb_b, border=2).item() == pytest.approx(_ssim_reference(ya, yb), rel=1e-9)


def test_ssim_of_identical_and_of_constant_images():
    x = smooth_image(4, 32, 32).repeat(2, 1, 1, 1)
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(2, dtype=torch.float64))
    # flat images: no variance, so SSIM is the luminance term alone, (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    a, b = torch.full((1, 3, 16, 16), 0.3), torch.full((1, 3, 16, 16), 0.6)
    ya, yb = (16 + 219 * 0.3) / 255, (16 + 219 * 0.6) / 255
    c1 = 0.01**2
    assert metrics.ssim(a, b).item() == pytest.approx((2 * ya * yb + c1) / (ya**2 + yb**2 + c1), rel=1e-6)
    assert metrics.ssim(x, 1 - x).mean().item() < 0.5


def test_psnr_ssim_reject_bad_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), border=3)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        metrics.psnr(torch.rand(3, 16, 16), torch.rand(3, 16, 16))


# ---------------------------------------------------------------------------- sr_eval


@pytest.fixture
def tiny_sr_checkpoint(tmp_path):
    """An untrained x4 sr network saved as a run's final.pt (4 channels, 1 residual block)."""
    torch.manual_seed(0)
    cfg = PerceptualConfig.for_task("sr", upscale=4, base_channels=4, residual_blocks=1, image_size=32)
    return perceptual.save_model(perceptual.build_network(cfg), cfg, tmp_path / "sr4" / "final.pt", {"step": 0})


def test_sr_eval_cli_writes_the_table_figure_and_scores(tmp_path, tiny_sr_checkpoint, capsys):
    a = io.save_image(smooth_image(20, 64, 64), tmp_path / "hr" / "a.png")
    b = io.save_image(smooth_image(21, 50, 62), tmp_path / "hr" / "b.png")  # cropped to 48x60
    out = tmp_path / "eval"
    assert sr_eval.main(["--photos", str(tmp_path / "hr"), "--net", f"tiny={tiny_sr_checkpoint}", "--scale", "4",
                         "--out", str(out), "--device", "cpu"]) == 0
    text = (out / "table.md").read_text()
    assert "| bicubic |" in text and "| tiny |" in text and "PSNR Y (dB)" in text
    res = json.loads((out / "results.json").read_text())
    assert list(res["per_photo"]) == ["bicubic", "tiny"] and res["figure_columns"] == ["bicubic", "tiny", "ground truth"]
    assert res["networks"]["tiny"]["loss"] == "perceptual"
    for row in res["per_photo"]["bicubic"].values():
        assert set(row) == {"psnr", "ssim", "feature", "seconds"}
    # the bicubic row is the metrics of the 8-bit bicubic upsampling of the degraded photo, border = scale
    gt = io.load_image(b)[..., :48, :60]
    up = sr_eval.as_saved(sr_eval.bicubic(perceptual.degrade(gt, 4), 4))
    assert res["per_photo"]["bicubic"]["b"]["psnr"] == pytest.approx(metrics.psnr(up, gt, border=4).item(), rel=1e-9)
    assert res["per_photo"]["bicubic"]["b"]["ssim"] == pytest.approx(metrics.ssim(up, gt, border=4).item(), rel=1e-9)
    # an untrained net with the bicubic skip (zero residual) is bicubic: the same scores, through
    # the network path of sr_eval (its precision, cropping and 8-bit rounding)
    for k in ("psnr", "ssim", "feature"):
        assert res["mean"]["tiny"][k] == pytest.approx(res["mean"]["bicubic"][k], rel=1e-6)
    assert image_size(out / "figure.png") == (3 * 64 + 4 * 4, 64 + 48 + 3 * 4)  # rows a, b; 3 columns
    assert a.is_file() and "wrote" in capsys.readouterr().out


def test_sr_eval_rejects_bad_input_with_one_line(tmp_path, tiny_sr_checkpoint, capsys):
    photo = io.save_image(smooth_image(22, 48, 48), tmp_path / "a.png")
    style_cfg = PerceptualConfig(base_channels=4, residual_blocks=1, image_size=32)
    style_ckpt = perceptual.save_model(perceptual.build_network(style_cfg), style_cfg, tmp_path / "style.pt")
    cases = [
        (["--photos", str(tmp_path / "missing.png"), "--net", f"n={tiny_sr_checkpoint}"], "photo not found"),
        (["--photos", str(photo), "--net", f"n={tiny_sr_checkpoint}", "--scale", "2"], "trained for x4, not --scale 2"),
        (["--photos", str(photo), "--net", f"n={style_ckpt}"], "not super-resolution"),
        (["--photos", str(photo), "--net", f"n={tmp_path / 'none.pt'}"], "checkpoint not found"),
        (["--photos", str(photo), "--net", f"bicubic={tiny_sr_checkpoint}"], "taken by a figure column"),
        (["--photos", str(photo), "--scale", "3"], "scale: must be 2, 4 or 8"),
    ]
    for argv, message in cases:
        assert sr_eval.main([*argv, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2, message
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "table.md").exists()
