"""The cached stages of MGAN training (mgan.training.stages): cache keys that stay put, the cache
layout, the crop stage against its own estimate, timings and the disk-space check."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_tiny_experiment

from mgan import io
from mgan.errors import InputError
from mgan.mdan import MDANConfig
from mgan.training import stages
from mgan.training.config import Paths, load_config, resolve_data_root, resolve_paths


def _byte_inputs(root: Path) -> Paths:
    """Inputs whose bytes are fixed (cache_keys reads names and bytes only, never pixels)."""
    files = {"style.png": b"style bytes", "warm/w0.png": b"w0", "train/p0.png": b"p0", "train/p1.png": b"p1",
             "test/t0.png": b"t0"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return Paths(root, root / "style.png", [root / "warm/w0.png"], [root / "train/p0.png", root / "train/p1.png"],
                 [root / "test/t0.png"])


def _cfg(*overrides: str):
    return load_config(None, ["mdan.precision=fp32", "train.precision=fp32", *overrides], base={})


def test_cache_keys_are_pinned(tmp_path):
    """The keys name caches on disk (hours of MDAN): a change here orphans every cache already built.

    The values are those of mgan.train before it was split into mgan.training. If a change of
    MDANConfig's or CropConfig's fields is meant to, update them (existing caches are rebuilt)."""
    assert stages._key({"a": 1, "b": [1.0, (2, 3)], "p": Path("x")}) == "9c15da7a767e"
    paths = _byte_inputs(tmp_path)
    assert stages._digest(paths.style) == "ce58294e4da5edb7"
    # MDAN's defaults of before guided_init (the photo as the start, content 5e-4, the stretch, D on maps):
    # the keys of then (the bundled releases' configs pin these values)
    old_defaults = _cfg("mdan.guided_init=photo", "mdan.content_weight=5e-4", "mdan.postprocess=stretch",
                        "mdan.tv_weight=30", "mdan.d_input=maps")
    assert stages.cache_keys(old_defaults, paths) == {"mdan": "a26bdb59acf7", "samples": "4b978fbac462",
                                                      "crops": "536d2bc77bc3"}
    # of before the style's contrast (matched start, content 1e-3, the stretch, TV 30, D on maps)
    assert stages.cache_keys(_cfg("mdan.content_weight=1e-3", "mdan.postprocess=stretch", "mdan.tv_weight=30",
                                  "mdan.d_input=maps"), paths) == {"mdan": "ffef604a09d5", "samples": "6d6f593c2123",
                                                                   "crops": "3eeed81067d3"}
    # of before TV 15 (the style's contrast, content 2e-3, TV 30, D on maps)
    assert stages.cache_keys(_cfg("mdan.tv_weight=30", "mdan.content_weight=2e-3", "mdan.d_input=maps"),
                             paths) == {"mdan": "72c1332b5ada", "samples": "87b73f4ccf98", "crops": "10cce82640f6"}
    # of before D on patches (TV 15, content 2e-3, D on maps)
    assert stages.cache_keys(_cfg("mdan.content_weight=2e-3", "mdan.d_input=maps"), paths) == {
        "mdan": "31e1e0421d3b", "samples": "2864b050f65e", "crops": "ddff89b35eb8"}
    assert stages.cache_keys(_cfg(), paths) == {"mdan": "6ceabc3d2d94", "samples": "269d494739b9",
                                                "crops": "c1bbdff4c0e1"}


def test_cache_keys_follow_what_each_stage_reads(tmp_path):
    paths = _byte_inputs(tmp_path)
    base = stages.cache_keys(_cfg(), paths)

    def changed(*overrides: str) -> set[str]:
        keys = stages.cache_keys(_cfg(*overrides), paths)
        return {k for k in keys if keys[k] != base[k]}

    assert changed("mdan.iterations=7") == {"mdan", "samples", "crops"}
    assert changed("warmup_iterations=3") == {"mdan", "samples", "crops"}
    assert changed("mdan.noise_std=0.5", "mdan.unguided_tv_weight=1.0",
                   "mdan.unguided_postprocess=clip") == set()  # unguided synthesis only
    assert changed("mdan.coarse_scale=0.25") == set()  # no coarse stage: its scale is not read
    assert changed("mdan.coarse_iterations=20") == {"mdan", "samples", "crops"}
    assert MDANConfig.guided_init == "match"
    assert changed("mdan.guided_init=photo") == {"mdan", "samples", "crops"}
    assert changed("mdan.postprocess=stretch") == {"mdan", "samples", "crops"}  # the targets' pixels
    assert changed("sample_size=128") == {"samples"}
    assert changed("crops.stride=32") == {"crops"}
    assert changed("train.lr=0.1", "model.upsample=resize", "name=other") == set()  # training is not cached
    (tmp_path / "train" / "p1.png").write_bytes(b"other photo")
    assert stages.cache_keys(_cfg(), paths)["mdan"] != base["mdan"]


def test_noise_pair_keys_follow_the_noise_images_not_how_training_mixes_them_in(tmp_path):
    paths = _byte_inputs(tmp_path)
    assert set(stages.cache_keys(_cfg(), paths)) == {"mdan", "samples", "crops"}  # off: the keys of before
    base = stages.cache_keys(_cfg("noise.count=4"), paths)
    assert {k: v for k, v in base.items() if not k.startswith("noise")} == stages.cache_keys(_cfg(), paths)

    def changed(*overrides: str) -> set[str]:
        keys = stages.cache_keys(_cfg("noise.count=4", *overrides), paths)
        return {k for k in keys if keys[k] != base[k]}

    for option in ("noise.count=5", "noise.size=128", "noise.scale=64", "noise.octaves=4", "noise.persistence=0.6",
                   "noise.seed=0"):
        assert changed(option) == {"noise", "noise_crops"}, option
    assert changed("noise.content_weight=0") == {"noise", "noise_crops"}
    assert changed("noise.content_weight=null") == set()  # MDAN's own weight: the key of before the field
    assert changed("noise.per_batch=4", "noise.start_step=10") == set()  # training is not cached
    assert changed("crops.stride=32") == {"crops", "noise_crops"}
    assert changed("mdan.iterations=7") == {"mdan", "samples", "crops", "noise", "noise_crops"}  # D carried on


def test_noise_targets_take_the_noise_content_weight(tmp_path, monkeypatch):
    """Stage 1c paints with ``noise.content_weight`` where it is set (the photos' targets keep
    ``mdan.content_weight``), with MDAN's own where it is null."""
    import mgan.mdan

    seen = []
    monkeypatch.setattr(stages, "_mdan_engine", lambda cfg, paths, device: cfg.mdan)
    monkeypatch.setattr(mgan.mdan, "run_batch", lambda m, images, folder, *a, **k: seen.append(m.content_weight))
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "mdan_D.pt").write_bytes(b"D")
    base = ["noise.count=1", "noise.size=64", "crops.size=64", "mdan.content_weight=4e-3"]
    for i, extra in enumerate((["noise.content_weight=0"], [])):
        stages.stage_noise(_cfg(*base, *extra), None, targets, tmp_path / f"noise{i}", torch.device("cpu"),
                           progress=False)
    assert seen == [0.0, 4e-3]


def test_noise_images_are_seeded_perlin_pngs(tmp_path):
    from mgan.noise import perlin

    cfg = _cfg("noise.count=2", "noise.size=64", "noise.scale=32", "noise.seed=7", "crops.size=64")
    files = stages.noise_images(cfg, tmp_path)
    assert [f.name for f in files] == ["perlin-00007.png", "perlin-00008.png"]
    want = io.quantize(perlin(64, 64, seed=8, scale=32.0)).float() / 255
    assert torch.equal(io.load_image(files[1]), want)  # what MDAN and the crops read: the 8-bit noise
    assert not torch.equal(io.load_image(files[0]), io.load_image(files[1]))
    mtime = files[0].stat().st_mtime_ns
    assert stages.noise_images(cfg, tmp_path) == files and files[0].stat().st_mtime_ns == mtime  # not rewritten


def test_stage_cache_layout(tmp_path):
    keys = {"mdan": "m" * 12, "samples": "s" * 12, "crops": "c" * 12}
    cache = stages.StageCache.at(tmp_path, keys)
    folder = tmp_path / "cache" / keys["mdan"]
    assert cache == stages.StageCache(folder, folder / "targets", folder / f"samples-{keys['samples']}",
                                      folder / f"crops-{keys['crops']}.pt")
    paths = _byte_inputs(tmp_path / "data")
    nothing = {"noise": True, "noise_crops": True}  # no noise pairs: nothing to run counts as done
    assert cache.done(_cfg(), paths) == {"mdan": False, "samples": False, "crops": False, **nothing}
    assert cache.done(_cfg("sample_mdan=false"), paths)["samples"]  # nothing to run counts as done
    cache.targets.mkdir(parents=True)
    (cache.targets / "DONE.json").write_text("{}")
    cache.crops.write_bytes(b"")
    assert cache.done(_cfg(), paths) == {"mdan": True, "samples": False, "crops": True, **nothing}
    # noise pairs: their targets and crops beside the photos' under the same MDAN key
    with_noise = stages.StageCache.at(tmp_path, {**keys, "noise": "n" * 12, "noise_crops": "k" * 12})
    assert with_noise.noise == folder / f"noise-{'n' * 12}"
    assert with_noise.noise_crops == folder / f"noise-crops-{'k' * 12}.pt"
    assert not with_noise.done(_cfg(), paths)["noise"] and not with_noise.done(_cfg(), paths)["noise_crops"]


def test_crop_stage_makes_the_estimated_crops_and_caches_them(tmp_path):
    cfg_path = make_tiny_experiment(tmp_path)
    cfg = load_config(cfg_path)
    paths = resolve_paths(cfg, resolve_data_root(cfg, cfg_path, None))
    targets = tmp_path / "targets"
    for p in paths.train:  # stand-ins for MDAN outputs: the photos as stage 1 loads them
        io.save_image(stages.load_photo(p, cfg), targets / f"{p.stem}.png")
    path = tmp_path / "crops.pt"
    crops, times = stages.stage_crops(cfg, paths, targets, path)
    assert len(crops) == stages.estimate_crops(cfg, paths) > 0 and path.is_file()
    assert crops.size == cfg.crops.size and times["seconds"] >= 0
    again, times_again = stages.stage_crops(cfg, paths, targets, path)  # from the cache: the build's times
    assert len(again) == len(crops) and times_again == pytest.approx(times)
    photo, target = again.batch(torch.arange(3))
    assert torch.equal(photo, target)  # the targets were the photos: the pairs line up


def test_merged_timings_add_training_over_resumes():
    first = stages.merged_timings({}, {"mdan": {"seconds": 10.0, "cpu_seconds": 40.0}, "train": {"seconds": 5.0}})
    assert first["mdan_s"] == 10.0 and first["train_s"] == 5.0 and first["total_s"] == 15.0
    assert first["total_cpu_s"] == 40.0
    second = stages.merged_timings(first, {"mdan": {"seconds": 11.0}, "train": {"seconds": 2.5}})
    assert second["mdan_s"] == 11.0 and second["train_s"] == 7.5 and second["total_s"] == 18.5


def test_disk_estimate_and_check(tmp_path, monkeypatch):
    cfg, paths = _cfg(), _byte_inputs(tmp_path)
    none_done = stages.estimate_disk_bytes(cfg, paths, 1000, {})
    all_done = stages.estimate_disk_bytes(cfg, paths, 1000, {"mdan": True, "samples": True, "crops": True})
    assert none_done - all_done == 2 * 384**2 * 3 + 256**2 * 3 + 1000 * 2 * 3 * 128**2
    noise = _cfg("noise.count=3")  # 3 images of 256 px: 34 crops of 128 px each under the 18 augmentations
    assert stages.estimate_noise_crops(noise) == 3 * 6 * (9 + 9 + 16) and stages.estimate_noise_crops(cfg) == 0
    done = {"mdan": True, "samples": True, "crops": True}
    assert (stages.estimate_disk_bytes(noise, paths, 1000, {**done, "noise": False, "noise_crops": False})
            - stages.estimate_disk_bytes(noise, paths, 1000, {**done, "noise": True, "noise_crops": True})
            ) == 3 * 2 * 3 * 256**2 + 612 * 2 * 3 * 128**2
    assert stages.estimate_disk_bytes(noise, paths, 1000, done) > stages.estimate_disk_bytes(cfg, paths, 1000, done)
    monkeypatch.setattr(stages.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**20))
    stages.check_disk_space(tmp_path, 2**19)
    with pytest.raises(InputError, match="needs about 2 MB, 1 MB are free"):
        stages.check_disk_space(tmp_path, 2 * 2**20)
