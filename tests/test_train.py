"""The ``python -m mgan.train`` command (paper Sec. 3.2): config and input errors as one line, and a
tiny end-to-end run: MDAN -> crops -> train -> checkpoint -> exact resume -> release -> decode.

The engine has its own tests: test_training_config, test_training_stages, test_trainer, test_runs."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_tiny_experiment

from mgan import io
from mgan.data import CropSet
from mgan.generator import load_release
from mgan.train import Trainer, load_config, main

# --------------------------------------------------------------------------- errors


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

    # a run killed before its first checkpoint (config.yaml and a logged row only) is started
    # afresh in its own folder, not left behind beside a new one
    killed = out / "00002-tiny"
    killed.mkdir()
    (killed / "config.yaml").write_text((full / "config.yaml").read_text().replace("max_steps: 4", "max_steps: 3"))
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss_g": 99.0}\n')
    (killed / "timings.json").write_text('{"train_s": 1e6}')
    assert main([str(cfg), "--dry-run", *common, "--set", "train.max_steps=3"]) == 0
    assert f"start afresh in {killed}" in capsys.readouterr().out
    assert main([str(cfg), *common, "--set", "train.max_steps=3"]) == 0
    assert "starting afresh" in capsys.readouterr().err and len(list(out.glob("0*-tiny"))) == 3
    assert io.load_checkpoint(killed / "checkpoint-latest.pt")["step"] == 3
    rows = [yaml.safe_load(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[0]["loss_g"] != 99.0
    assert json.loads((killed / "timings.json").read_text())["train_s"] < 1e6

    # release -> decode
    rel = full / "generator.safetensors"
    G, extra = load_release(rel)
    assert extra["steps"] == 4 and extra["style"] == "style.png"
    # the painting's colours at its own resolution, for the decoder's default "match"
    from mgan import colour

    want = colour.moments(io.load_image(root / "data" / "style" / "style.png"))
    for got, ref in zip(colour.moments_from_json(extra["style_colour"]), want, strict=True):
        torch.testing.assert_close(got, ref)
    from mgan import zoo  # the release's model card: what training knows, and no path of this machine

    card = zoo.read_card(rel)
    assert set(zoo.TRAINING_FIELDS) <= set(card) and card["steps"] == 4 and card["photos"] == 3
    assert card["wall_time_s"] > 0 and zoo.absolute_paths({"card": card, "extra": extra}) == []
    assert (full / "decoded" / "t0.png").is_file()
    from mgan.decode import Decoder

    photo = io.load_image(root / "data" / "test" / "t0.png")
    dec = Decoder(rel, device="cpu", precision="fp32")
    y = dec.decode(photo)
    assert dec.postprocess == "match" and y.shape == photo.shape and torch.isfinite(y).all()
    assert 0 <= y.min() and y.max() <= 1
    # the release decodes like the trained G in eval mode (fp16 weights: small differences),
    # with its running BN statistics (the default per-image ones are decode.py's tests'), and
    # without the border margin, which the trainer's own decode does not have
    y = Decoder(rel, device="cpu", precision="fp32", bn_stats="running", postprocess="none", margin=0).decode(photo)
    cfg_obj = load_config(full / "config.yaml")
    (crops_file,) = (out / "cache").glob("*/crops-*.pt")
    tr = Trainer(cfg_obj, CropSet.from_state_dict(io.load_checkpoint(crops_file)), progress=False)
    tr.G.load_state_dict(a["G"])
    ref = tr.generate(tr.encoder(photo)["relu4_1"], "eval")
    assert (ref - y).abs().mean() < 1e-3  # measured 4e-6; the margin alone would give 6e-3


def test_noise_pairs_end_to_end_with_exact_resume(tmp_path, capsys):
    """noise.count > 0: stage 1c paints MDAN over seeded Perlin images with D carried on from stage 1
    (stage 1's D file untouched), stage 2b crops them, training mixes them in from noise.start_step,
    and a run resumed across that step equals an uninterrupted one."""
    cfg = make_tiny_experiment(tmp_path)
    out = tmp_path / "runs"
    common = ["--outdir", str(out), "--no-progress", "--threads", "2", "--set", "noise.count=2",
              "--set", "noise.size=64", "--set", "noise.scale=32", "--set", "noise.per_batch=4",
              "--set", "noise.start_step=2"]
    assert main([str(cfg), "--dry-run", *common]) == 0
    plan = capsys.readouterr().out
    assert "stage 1c MDAN of 2 Perlin images (64 px, scale 32 px): to do" in plan and "stage 2b noise crops" in plan
    assert "(+ 4 noise crops from step 2)" in plan
    # too few noise crops for a batch: one line before any work
    assert main([str(cfg), *common, "--set", "noise.per_batch=999"]) == 2
    assert "fewer than one batch of 999" in capsys.readouterr().err and not out.exists()
    assert main([str(cfg), *common, "--stop-after", "mdan"]) == 0
    (cache,) = (out / "cache").glob("*")
    d1 = (cache / "targets" / "mdan_D.pt").read_bytes()
    (noise,) = cache.glob("noise-*[!t]")  # noise-<key>/, not noise-crops-<key>.pt
    assert (noise / "DONE.json").is_file() and (noise / "mdan_D.pt").read_bytes() != d1
    for name in ("perlin-00200.png", "perlin-00201.png"):
        src, target = io.load_image(noise / "inputs" / name), io.load_image(noise / name)
        assert target.shape == src.shape == (1, 3, 64, 64) and (target - src).abs().mean() > 0.01  # MDAN moved it

    assert main([str(cfg), *common]) == 0
    full = _latest(out, 0)
    assert (full / "generator.safetensors").is_file() and (cache / "targets" / "mdan_D.pt").read_bytes() == d1
    assert "paired crops of 2 noise images" in capsys.readouterr().err
    from mgan.noise import decode_scale  # the release decodes noise at the scale it was trained on

    assert decode_scale("perlin", full / "generator.safetensors") == 32.0
    from mgan import zoo

    assert zoo.read_card(full / "generator.safetensors")["config"]["noise_pairs"] == (
        "2 Perlin images of 64 px at 32 px scale, 4 crops a step from step 2")
    assert decode_scale("perlin", tmp_path / "nope.safetensors") == 64.0  # unreadable: the general default
    state = io.load_checkpoint(full / "checkpoint-latest.pt")
    assert state["num_noise_crops"] > 0 and state["step"] == 4
    # 1 step, then resume to 4: crosses start_step, bit for bit
    assert main([str(cfg), *common, "--set", "train.max_steps=1"]) == 0
    half = _latest(out, 1)
    assert decode_scale("perlin", half / "generator.safetensors") == 64.0  # released before any noise crop
    assert main(["--resume", str(half), "--outdir", str(out), "--no-progress", "--threads", "2",
                 "--set", "train.max_steps=4"]) == 0
    b = io.load_checkpoint(half / "checkpoint-latest.pt")
    for net in ("G", "D"):
        for k, v in state[net].items():
            assert torch.equal(v, b[net][k]), f"{net}.{k} differs after resume"
    # without noise pairs the same photos train differently from step start_step on
    plain = ["--outdir", str(out), "--no-progress", "--threads", "2"]
    assert main([str(cfg), *plain]) == 0
    c = io.load_checkpoint(_latest(out, 2) / "checkpoint-latest.pt")
    assert c["num_noise_crops"] == 0 and any(not torch.equal(v, c["G"][k]) for k, v in state["G"].items())
    assert decode_scale("perlin", _latest(out, 2) / "generator.safetensors") == 64.0  # no noise pairs: the default
