"""The cached stages before training: MDAN targets (Sec. 3.1) -> paired crops (Sec. 3.2).

1. **MDAN targets** (Sec. 3.1, :func:`stage_mdan`): guided MDAN over the config's
   training photos in batch mode, one D carried from image to image, warmed up on
   ``warmup_photos`` first (the original code's 5 "initial" images); also over the
   held-out ``sample_photos`` (:func:`stage_sample_mdan`) so the sample grids can show G
   next to MDAN (the original ran its 10 test images too).
   With noise pairs (``noise.count > 0``, not in the paper) the same guided MDAN also
   paints over seeded Perlin images (:func:`stage_noise`, stage 1c), D carried on from stage 1.
2. **Paired crops** (Sec. 3.2, :func:`stage_crops`): ``crops.size`` crops at
   ``crops.stride`` of every photo and its MDAN output under the same rotation x scale x
   flip augmentation, cached as uint8; the noise pairs' crops likewise
   (:func:`stage_noise_crops`, stage 2b).

All live in ``<outdir>/cache/<key>/`` (:class:`StageCache`), keyed by a hash of every
input they depend on (:func:`cache_keys`: style and photo bytes, MDAN and crop options;
not the code: delete the cache after changing MDAN's code), so reruns skip them. A
stage is done when its ``DONE.json`` (MDAN) or its crop file exists; both are written
last and atomically, so a killed stage is redone, never half-used.

The keys name caches on disk: changing what goes into them, or how it is serialised,
orphans every cache already built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mgan import distributed, io, vgg
from mgan import precision as prec
from mgan.config import to_dict
from mgan.data import CropSet, augmentations, build_crop_set, crop_grid
from mgan.discriminator import MGANDiscriminator
from mgan.errors import InputError
from mgan.generator import Generator
from mgan.training.config import ExperimentConfig, Paths
from mgan.vgg import LAYER_INDEX

# ----------------------------------------------------------------------------- cache keys


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def _key(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


UNGUIDED_ONLY = frozenset({"noise_std", "unguided_tv_weight", "unguided_postprocess", "unguided_d2_layer",
                           "d2_patch_size", "d2_patch_stride", "d2_weight"})  # MDANConfig fields that guided synthesis ignores


def cache_keys(cfg: ExperimentConfig, paths: Paths) -> dict[str, str]:
    """Keys of the cached stages: ``mdan`` (targets), ``samples`` (MDAN of sample photos), ``crops``,
    and with noise pairs (``noise.count > 0``) ``noise`` (their MDAN targets) and ``noise_crops``.

    ``cfg`` must have its precisions resolved (:func:`mgan.training.config.resolve_precision`).
    """
    files = lambda ps: [(p.name, _digest(p)) for p in ps]  # noqa: E731
    # Stage 1 is guided synthesis only: options of unguided synthesis do not change its outputs.
    mdan_opts = {k: v for k, v in to_dict(cfg.mdan).items() if k not in UNGUIDED_ONLY}
    if not cfg.mdan.coarse_iterations:  # no coarse stage: keys as before these fields existed (caches kept)
        del mdan_opts["coarse_iterations"], mdan_opts["coarse_scale"]
    if cfg.mdan.guided_init == "photo":  # the start image before guided_init existed: those caches are kept
        del mdan_opts["guided_init"]
    mdan = _key({"style": (paths.style.name, _digest(paths.style)), "mdan": mdan_opts,
                 "warmup": files(paths.warmup), "warmup_iterations": cfg.warmup_iterations,
                 "train": files(paths.train)})
    keys = {
        "mdan": mdan,
        "samples": _key({"mdan": mdan, "samples": files(paths.samples), "size": cfg.sample_size}),
        "crops": _key({"mdan": mdan, "crops": to_dict(cfg.crops)}),
    }
    if cfg.noise.count:  # what makes the noise images and their targets (not how training mixes them in)
        n = cfg.noise
        made = [n.count, n.size, n.scale, n.octaves, n.persistence, n.seed]
        if n.content_weight is not None:  # None: MDAN's own, the key of caches made before the field existed
            made.append(n.content_weight)
        keys["noise"] = _key({"mdan": mdan, "noise": made})
        keys["noise_crops"] = _key({"noise": keys["noise"], "crops": to_dict(cfg.crops)})
    return keys


@dataclass(frozen=True)
class StageCache:
    """Where the cached stages of one experiment live: ``folder = <outdir>/cache/<mdan key>/`` holding
    ``targets/`` (stage 1), ``samples-<key>/`` (stage 1b), ``crops-<key>.pt`` (stage 2) and, with
    noise pairs, ``noise-<key>/`` (stage 1c: ``inputs/`` and their targets) and ``noise-crops-<key>.pt``."""

    folder: Path
    targets: Path
    samples: Path
    crops: Path
    noise: Path | None = None
    noise_crops: Path | None = None

    @classmethod
    def at(cls, outdir: Path, keys: dict[str, str]) -> StageCache:
        """The cache of the stages with :func:`cache_keys` ``keys`` under ``outdir``."""
        folder = outdir / "cache" / keys["mdan"]
        noise = folder / f"noise-{keys['noise']}" if "noise" in keys else None
        noise_crops = folder / f"noise-crops-{keys['noise_crops']}.pt" if "noise_crops" in keys else None
        return cls(folder, folder / "targets", folder / f"samples-{keys['samples']}",
                   folder / f"crops-{keys['crops']}.pt", noise, noise_crops)

    def done(self, cfg: ExperimentConfig, paths: Paths) -> dict[str, bool]:
        """Which stages are already cached: ``mdan``, ``samples`` (also true when there are none
        to run), ``crops``, ``noise`` and ``noise_crops`` (true without noise pairs)."""
        return {"mdan": (self.targets / "DONE.json").is_file(),
                "samples": not (cfg.sample_mdan and paths.samples) or (self.samples / "DONE.json").is_file(),
                "crops": self.crops.is_file(),
                "noise": self.noise is None or (self.noise / "DONE.json").is_file(),
                "noise_crops": self.noise_crops is None or self.noise_crops.is_file()}


# ----------------------------------------------------------------------------- timings


class Clock:
    """Wall and process-CPU seconds since creation. CPU time counts every thread, so on a
    shared machine ``cpu_seconds / threads`` estimates the wall time a stage would take alone."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": time.process_time() - self.cpu}


STAGES = ("mdan", "mdan_samples", "mdan_noise", "crops", "noise_crops", "features", "train", "release")
TIMINGS = "timings.json"  # in the run folder: what each stage cost (write_timings)


def merged_timings(old: dict[str, float], stages: dict[str, dict[str, float]]) -> dict[str, float]:
    """``old`` (a ``timings.json``) updated with this session's ``stages`` and the totals
    (see :func:`write_timings`); pure, so the release can state its wall time before the
    file is written."""
    old = dict(old)
    for stage, times in stages.items():
        for key, v in (("_s", times.get("seconds")), ("_cpu_s", times.get("cpu_seconds"))):
            if v is None:
                continue
            name = stage + key
            old[name] = round(old.get(name, 0.0) + v if stage == "train" else v, 2)
    old["total_s"] = round(sum(old.get(f"{s}_s", 0.0) for s in STAGES), 2)
    old["total_cpu_s"] = round(sum(old.get(f"{s}_cpu_s", 0.0) for s in STAGES), 2)
    return old


def read_timings(run_dir: Path) -> dict[str, float]:
    """``run_dir/timings.json`` as a dict (empty if there is none yet)."""
    path = run_dir / TIMINGS
    return json.loads(path.read_text()) if path.is_file() else {}


def write_timings(run_dir: Path, stages: dict[str, dict[str, float]], extra: dict | None = None) -> None:
    """Update ``timings.json``: ``<stage>_s`` (wall) and ``<stage>_cpu_s`` (process CPU, all
    threads) per stage, and their totals. Training time adds up over resumes; cached stages
    report the time they took when they were built."""
    old = merged_timings(read_timings(run_dir), stages)
    old.update(extra or {})
    old["threads"] = torch.get_num_threads()
    with io.atomic_write(run_dir / TIMINGS, "w") as f:
        json.dump(old, f, indent=1)


# ----------------------------------------------------------------------------- stage 1: MDAN targets


def _done_times(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    return {"seconds": float(data.get("seconds", 0.0)), "cpu_seconds": float(data.get("cpu_seconds", 0.0))}


def _mdan_engine(cfg: ExperimentConfig, paths: Paths, device: torch.device):
    from mgan.mdan import MDAN  # noqa: PLC0415

    m = cfg.mdan
    style = io.load_image(paths.style, max_side=m.style_size, min_side=m.min_side)
    taps = tuple(sorted({m.d_layer, m.content_layer}, key=LAYER_INDEX.get))
    enc = vgg.shared_encoder(taps, m.vgg_weights, m.pooling, prec.resolve(m.precision, device), True, str(device))
    return MDAN(style, m, device=device, encoder=enc)


def _d_file(folder: Path, d: distributed.Dist) -> Path:
    """Where a rank keeps its MDAN discriminator: rank 0 (or the only process) ``mdan_D.pt``."""
    return folder / ("mdan_D.pt" if d.main else f"mdan_D.rank{d.rank}.pt")


def _finish_stage(folder: Path, d: distributed.Dist, info: dict) -> None:
    """Wait for every rank's share of a stage, then mark it done (rank 0)."""
    distributed.barrier(d)
    if d.main:
        with io.atomic_write(folder / "DONE.json", "w") as f:
            json.dump(info, f)
    distributed.barrier(d)


def stage_mdan(cfg: ExperimentConfig, paths: Paths, folder: Path, device: torch.device,
               progress: bool = True, d: distributed.Dist | None = None) -> dict[str, float]:
    """Stage 1: MDAN outputs of the training photos into ``folder`` (resumable).

    With several ranks each takes every ``world``-th photo with a D of its own (each warmed
    up on the warm-up photos), and they wait for each other at the end. Returns the stage's
    wall and CPU seconds (as recorded when it finished, if cached)."""
    from mgan.mdan import run_batch  # noqa: PLC0415

    d = d or distributed.Dist()
    done = folder / "DONE.json"
    if done.is_file():
        return _done_times(done)
    clock = Clock()
    io.check_writable(folder)
    mdan = _mdan_engine(cfg, paths, device)
    run_batch(mdan, paths.train[d.rank :: d.world], folder, cfg.mdan.size, cfg.mdan.iterations, warmup=paths.warmup,
              warmup_iterations=cfg.warmup_iterations, d_path=_d_file(folder, d), progress=progress and d.main)
    times = clock.read()
    _finish_stage(folder, d, {"photos": len(paths.train), "warmup": len(paths.warmup), "ranks": d.world, **times})
    return times


def stage_sample_mdan(cfg: ExperimentConfig, paths: Paths, targets: Path, folder: Path, device: torch.device,
                      progress: bool = True, d: distributed.Dist | None = None) -> dict[str, float]:
    """Stage 1b: MDAN of the held-out sample photos, starting from the trained D of stage 1
    (as the original code did for its test images); the training D file is not modified.
    Ranks share the photos as in :func:`stage_mdan`, each starting from its own stage-1 D."""
    from mgan.mdan import run_batch  # noqa: PLC0415

    d = d or distributed.Dist()
    if not paths.samples:
        return {}
    if (folder / "DONE.json").is_file():
        return _done_times(folder / "DONE.json")
    clock = Clock()
    io.check_writable(folder)
    d_path = _carry_d(targets, folder, d)
    mdan = _mdan_engine(cfg, paths, device)
    run_batch(mdan, paths.samples[d.rank :: d.world], folder, cfg.sample_size, cfg.mdan.iterations, d_path=d_path,
              progress=progress and d.main)
    times = clock.read()
    _finish_stage(folder, d, {"photos": len(paths.samples), "ranks": d.world, **times})
    return times


def _carry_d(targets: Path, folder: Path, d: distributed.Dist) -> Path:
    """This rank's D file in ``folder``, first copied from its stage-1 D in ``targets`` (rank 0's
    if it has none), so a later stage starts where stage 1 left D and stage 1's file is untouched."""
    d_path = _d_file(folder, d)
    if not d_path.is_file():
        source = _d_file(targets, d)
        with io.atomic_write(d_path) as f:
            f.write((source if source.is_file() else targets / "mdan_D.pt").read_bytes())
    return d_path


def noise_images(cfg: ExperimentConfig, folder: Path) -> list[Path]:
    """The noise pairs' inputs: ``cfg.noise.count`` Perlin images ``[1, 3, size, size]`` (seeds
    ``seed``, ``seed + 1``, ...) as PNGs in ``folder`` (written if missing), so MDAN and the
    crops read the same 8-bit pixels; returns their paths."""
    from mgan.noise import perlin  # noqa: PLC0415

    n = cfg.noise
    paths = [folder / f"perlin-{n.seed + i:05d}.png" for i in range(n.count)]
    for i, p in enumerate(paths):
        if not p.is_file():
            img = perlin(n.size, n.size, seed=n.seed + i, octaves=n.octaves, persistence=n.persistence, scale=n.scale)
            io.save_image(img, p)
    return paths


def stage_noise(cfg: ExperimentConfig, paths: Paths, targets: Path, folder: Path, device: torch.device,
                progress: bool = True, d: distributed.Dist | None = None) -> dict[str, float]:
    """Stage 1c (noise pairs, ``noise.count > 0``): guided MDAN targets of the Perlin images of
    :func:`noise_images` (in ``folder/inputs``) into ``folder``, D carried on from stage 1 (it has
    learnt the painting's patches on the training photos) as the sample stage does; resumable like stage 1.
    Returns the stage's wall and CPU seconds."""
    from mgan.mdan import run_batch  # noqa: PLC0415

    d = d or distributed.Dist()
    if not cfg.noise.count:
        return {}
    if (folder / "DONE.json").is_file():
        return _done_times(folder / "DONE.json")
    clock = Clock()
    io.check_writable(folder / "inputs")
    if d.main:
        noise_images(cfg, folder / "inputs")
    distributed.barrier(d)
    images = noise_images(cfg, folder / "inputs")  # the paths (all written by now)
    d_path = _carry_d(targets, folder, d)
    if cfg.noise.content_weight is not None:
        cfg = dataclasses.replace(cfg, mdan=dataclasses.replace(cfg.mdan, content_weight=cfg.noise.content_weight))
    mdan = _mdan_engine(cfg, paths, device)
    run_batch(mdan, images[d.rank :: d.world], folder, cfg.noise.size, cfg.mdan.iterations, d_path=d_path,
              progress=progress and d.main)
    times = clock.read()
    _finish_stage(folder, d, {"images": len(images), "ranks": d.world, **times})
    return times


# ----------------------------------------------------------------------------- stage 2: paired crops


def load_photo(path: Path, cfg: ExperimentConfig, size: int | None = None) -> Tensor:
    """A photo ``[1, 3, H, W]`` exactly as MDAN's batch mode loads it (longest side ``size``,
    default ``mdan.size``; sides multiples of 8)."""
    return io.load_image(path, max_side=size or cfg.mdan.size, multiple=8, min_side=cfg.mdan.min_side)


def _target_of(source: Tensor, target: Path, what: str, cache: Path) -> Tensor:
    """The MDAN output ``target`` of ``source`` ``[1, 3, H, W]``; InputError if their sizes differ
    (a cache from other inputs), naming the ``cache`` folder to delete."""
    out = io.load_image(target)
    if out.shape != source.shape:
        raise InputError(f"MDAN output {target} is {tuple(out.shape[-2:])}, {what} {tuple(source.shape[-2:])}; "
                         f"delete the cache folder {cache}")
    return out


def _pairs(cfg: ExperimentConfig, paths: Paths, targets: Path) -> Iterator[tuple[str, Tensor, Tensor]]:
    for p in paths.train:
        photo = load_photo(p, cfg)
        yield p.name, photo, _target_of(photo, targets / f"{p.stem}.png", "its photo", targets.parent)


def _noise_pairs(cfg: ExperimentConfig, folder: Path) -> Iterator[tuple[str, Tensor, Tensor]]:
    for p in noise_images(cfg, folder / "inputs"):
        noise = io.load_image(p)
        yield p.name, noise, _target_of(noise, folder / p.name, "its noise image", folder)


def stage_crops(cfg: ExperimentConfig, paths: Paths, targets: Path, path: Path) -> tuple[CropSet, dict[str, float]]:
    """Stage 2: paired crops (built once, then loaded from ``path``); returns ``(crops, build times)``."""
    return _crop_stage(cfg, lambda: _pairs(cfg, paths, targets), path)


def stage_noise_crops(cfg: ExperimentConfig, folder: Path, path: Path) -> tuple[CropSet, dict[str, float]]:
    """Stage 2b: paired crops of the noise images and their MDAN targets in ``folder`` (stage 1c),
    with the photos' crop options; built once, then loaded from ``path``."""
    return _crop_stage(cfg, lambda: _noise_pairs(cfg, folder), path)


def _crop_stage(cfg: ExperimentConfig, pairs: Callable[[], Iterator[tuple[str, Tensor, Tensor]]],
                path: Path) -> tuple[CropSet, dict[str, float]]:
    clock = Clock()
    if path.is_file():
        state = io.load_checkpoint(path)
        try:
            times = {k: float(state.get(k, 0.0)) for k in ("seconds", "cpu_seconds")}
            return CropSet.from_state_dict(state), times
        except (ValueError, KeyError) as exc:
            raise InputError(f"{path}: {exc}; delete it to rebuild") from None
    c = cfg.crops
    crops = build_crop_set(pairs(), c.size, c.stride, augmentations(c.angles, c.scales, c.flip))
    times = clock.read()
    with io.atomic_write(path) as f:  # streamed: the crops can be GBs, no second copy in memory
        torch.save({**crops.state_dict(), **times}, f)
    return crops, times


# ----------------------------------------------------------------------------- estimates before any work


def estimate_crops(cfg: ExperimentConfig, paths: Paths) -> int:
    """Number of crops stage 2 will make, from image sizes only (for ``--dry-run``)."""
    from PIL import Image  # noqa: PLC0415

    total = 0
    for p in paths.train:
        with Image.open(p) as img:
            w, h = img.size
        s = cfg.mdan.size / max(w, h)
        total += _crops_of(cfg, round(h * s) // 8 * 8, round(w * s) // 8 * 8)
    return total


def estimate_noise_crops(cfg: ExperimentConfig) -> int:
    """Number of crops stage 2b will make of the noise images (0 without noise pairs)."""
    return cfg.noise.count * _crops_of(cfg, cfg.noise.size, cfg.noise.size)


def _crops_of(cfg: ExperimentConfig, h: int, w: int) -> int:
    """Crops :func:`mgan.data.paired_crops` cuts from an ``h`` x ``w`` image under the config's augmentations."""
    c = cfg.crops
    return sum(len(crop_grid(max(1, round(h * scale)), max(1, round(w * scale)), c.size, c.stride))
               for _, scale, _ in augmentations(c.angles, c.scales, c.flip))


def estimate_disk_bytes(cfg: ExperimentConfig, paths: Paths, n_crops: int, stages_done: dict[str, bool]) -> int:
    """Bytes the stages still to run will write (an upper bound, for the check before work starts).

    MDAN outputs (PNG, at most raw RGB), the uint8 crop cache (photo + target per crop),
    and checkpoints: G, D and both Adam states in fp32, written next to the previous one
    (atomic replace), plus the kept snapshots and the fp16 release.
    """
    need = 0
    m = cfg.mdan
    if not stages_done.get("mdan"):
        need += len(paths.train) * m.size * m.size * 3
    if not stages_done.get("samples"):
        need += len(paths.samples) * cfg.sample_size * cfg.sample_size * 3
    if not stages_done.get("crops"):
        need += n_crops * 2 * 3 * cfg.crops.size**2
    if not stages_done.get("noise", not cfg.noise.count):  # the images and their targets, then their crops
        need += cfg.noise.count * 2 * 3 * cfg.noise.size**2
    if not stages_done.get("noise_crops", not cfg.noise.count):
        need += estimate_noise_crops(cfg) * 2 * 3 * cfg.crops.size**2
    g = sum(p.numel() for p in Generator(cfg.model).parameters())
    t = cfg.train
    d = sum(p.numel() for p in MGANDiscriminator(vgg.channels(t.d_layer), tuple(t.d_hidden), t.d_ring).parameters())
    ckpt = (g + d) * 4 * 3
    steps = t.max_steps or t.epochs * max(1, n_crops // t.batch)
    snapshots = steps // t.snapshot_every if t.snapshot_every else 0
    return need + ckpt * (2 + snapshots) + g * 2


def check_disk_space(outdir: Path, need: int) -> None:
    """InputError if ``outdir``'s file system has less than ``need`` bytes (+5%) free."""
    free = shutil.disk_usage(outdir).free
    if free < need * 1.05:
        raise InputError(f"not enough disk space in {outdir}: this run needs about {need / 2**20:.0f} MB, "
                         f"{free / 2**20:.0f} MB are free")
