"""The MGAN experiment config (mgan.training.config): the paper's defaults, where data_root is
resolved from, the inputs it names, and finding a run folder with the same resolved config."""

import dataclasses

import pytest
import torch
from conftest import make_tiny_experiment

from mgan import runs
from mgan.config import dump_yaml
from mgan.errors import ConfigError, InputError
from mgan.training.config import (
    ExperimentConfig,
    find_matching_run,
    load_config,
    probe_inputs,
    resolve_data_root,
    resolve_paths,
    resolve_precision,
)


def test_config_defaults_are_the_papers():
    cfg = ExperimentConfig()
    t = cfg.train
    assert (t.lr, t.beta1, t.batch, t.epochs, t.pixel_weight, t.adv_weight) == (0.02, 0.5, 64, 5, 0.99, 0.01)
    assert (cfg.crops.size, cfg.crops.stride, cfg.model.channels) == (128, 64, (512, 256, 128))


@pytest.mark.parametrize("overrides,match", [
    (["name=a b"], "name: only letters"),
    (["train.d_layer=pool3"], "d_layer: not a VGG-19 conv/relu layer"),
    (["train.pixel_weight=0", "train.adv_weight=0"], "nothing to train"),
    (["model.in_channels=256"], "model.in_channels: relu4_1 has 512 channels"),
    (["mdan.size=64", "crops.size=128"], "mdan.size (64) is smaller than crops.size (128)"),
    (["wandb.mode=cloud"], r"wandb.mode: must be one of \['offline', 'online'\]"),
    (["noise.count=-1"], "noise.count: must be >= 0"),
    (["noise.content_weight=-1"], "noise.content_weight: must be >= 0"),
    (["noise.size=100"], "noise.size: must be a multiple of 8"),
    (["noise.scale=0"], "noise.scale: must be > 0"),
    (["noise.persistence=1.5"], "noise.persistence: must be in (0, 1]"),
    (["noise.per_batch=0"], "noise.per_batch: must be >= 1"),
    (["noise.start_step=-1"], "noise.start_step: must be >= 0"),
    (["noise.count=2", "noise.size=64"], "noise.size (64) is smaller than crops.size (128)"),
    (["noise.count=2", "noise.size=64", "crops.size=64", "mdan.patch_size=20"], "noise.size (64) is below mdan.min_side (80)"),
])
def test_impossible_values_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides, base={})


def test_data_root_is_relative_to_the_project_then_the_command_line(tmp_path, monkeypatch):
    cfg_path = make_tiny_experiment(tmp_path)  # tmp_path/experiments/tiny.yaml, data_root "data"
    cfg = load_config(cfg_path)
    monkeypatch.chdir(cfg_path.parent)
    assert resolve_data_root(cfg, cfg_path, None) == tmp_path.resolve() / "data"  # not the CWD
    assert resolve_data_root(cfg, cfg_path, "..") == tmp_path.resolve()  # --data-root: relative to the CWD
    resumed = dataclasses.replace(cfg, data_root=str(tmp_path / "data"))  # a run's config.yaml: absolute
    assert resolve_data_root(resumed, None, None) == tmp_path.resolve() / "data"


def test_paths_and_probe(tmp_path):
    cfg_path = make_tiny_experiment(tmp_path, n_train=3)
    cfg = load_config(cfg_path, ["max_photos=2", "sample_count=1"])
    paths = resolve_paths(cfg, tmp_path / "data")
    assert [p.name for p in paths.train] == ["p0.png", "p1.png"] and [p.name for p in paths.samples] == ["t0.png"]
    assert paths.style.name == "style.png" and [p.name for p in paths.warmup] == ["w0.png"]
    probe_inputs(cfg, paths)
    (tmp_path / "data" / "train" / "p1.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="share the name 'p1'"):
        resolve_paths(load_config(cfg_path), tmp_path / "data")
    with pytest.raises(InputError, match="data folder not found"):
        resolve_paths(cfg, tmp_path / "nope")
    with pytest.raises(InputError, match="style image not found"):
        resolve_paths(load_config(cfg_path, ["style=missing.png"]), tmp_path / "data")


def test_find_matching_run_is_the_newest_with_the_same_resolved_config(tmp_path):
    cfg = resolve_precision(load_config(None, ["name=exp"], base={}), torch.device("cpu"))
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.1))
    assert find_matching_run(tmp_path / "none", cfg) is None
    for c in (cfg, cfg, other):
        runs.write_config(runs.next_run_dir(tmp_path, "exp"), dump_yaml(c))
    (runs.next_run_dir(tmp_path, "exp") / "config.yaml").write_text("train:\n  nope: 1\n")  # unreadable: skipped
    assert find_matching_run(tmp_path, cfg) == tmp_path / "00001-exp"
    assert find_matching_run(tmp_path, other) == tmp_path / "00002-exp"
    assert find_matching_run(tmp_path, dataclasses.replace(cfg, name="else")) is None
