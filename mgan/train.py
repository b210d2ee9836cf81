"""MGAN training: a feed-forward generator G fitted to MDAN outputs (paper Sec. 3.2 and 5).

``python -m mgan.train experiments/picasso.yaml`` runs every stage that is not already
done; each one is resumable:

1. **MDAN targets** (Sec. 3.1): guided MDAN over the config's training photos in batch
   mode, one D carried from image to image, warmed up on ``warmup_photos`` first (the
   original code's 5 "initial" images); also over the held-out ``sample_photos`` so the
   sample grids can show G next to MDAN (the original ran its 10 test images too).
2. **Paired crops** (Sec. 3.2): ``crops.size`` crops at ``crops.stride`` of every photo and
   its MDAN output under the same rotation x scale x flip augmentation, cached as uint8.
3. **Training** G against an MGAN discriminator on relu3_1 of G's output: pixel MSE to the
   MDAN crop plus the hinge adversarial loss (plus an optional VGG feature loss, the
   paper's "neural VAE" metric of Fig. 5), Adam, in an auto-numbered run folder with the
   resolved ``config.yaml``, ``metrics.jsonl``, sample grids and checkpoints.
4. **Release**: G as a small ``safetensors`` file (:func:`mgan.generator.save_release`)
   that :class:`mgan.decode.Decoder` loads, checked by decoding the sample photos.

Stages 1-2 live in ``<outdir>/cache/<key>/``, keyed by a hash of every input they depend
on (style and photo bytes, MDAN and crop options; not the code: delete the cache after
changing MDAN's code), so reruns skip them. Rerunning the same command resumes the
newest unfinished run folder whose resolved config is the same, or reports it finished.

BatchNorm at inference: G decodes in eval mode (BN running statistics), as
:mod:`mgan.decode` does. The original code left BN in train mode (statistics of the
batch at hand). Decided by looking at the sample grids, which show both (rows 3 and 4):
on the quick config's held-out photos, per-image statistics made the images warmer and
darker, and 2.5x further from the MDAN outputs (pixel MSE 0.031 vs. 0.012 at 1000
steps; BN statistics recomputed over training crops with the final weights: 0.013,
no gain). Per-image statistics would also make every pixel depend on the whole image,
which rules out exact tiled decoding.

Names in code vs. the paper: ``G`` the generator (blue blocks of Fig. 2), ``D`` the
discriminator on neural patches (green blocks), ``encoder`` the frozen VGG-19 (grey
blocks); ``loss_pix`` is the "pixel VAE" metric, ``loss_feat`` the "neural VAE" metric,
``loss_adv`` the MGAN hinge term (Fig. 5).

CLI::

    python -m mgan.train experiments/picasso.yaml
    python -m mgan.train experiments/quick.yaml --set train.batch=8 --dry-run
    python -m mgan.train --resume runs/00003-quick
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import json
import math
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan import cli, distributed, io, losses
from mgan import precision as prec  # `precision` is a parameter name below
from mgan.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from mgan.data import CropSet, augmentations, build_crop_set, crop_grid, epoch_order
from mgan.discriminator import MGANDiscriminator
from mgan.generator import Generator, GeneratorConfig, save_release
from mgan.mdan import MDANConfig
from mgan.vgg import LAYER_INDEX, layer_scale

RUN_NAME = re.compile(r"^(\d{5})-(.+)$")
CHECKPOINT_FORMAT = "mgan-train-v1"
RELEASE_NAME = "generator.safetensors"
LATEST = "checkpoint-latest.pt"


def _relu_channels(layer: str) -> int:
    """Channels of a VGG-19 tap (``relu3_1`` -> 256)."""
    return {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(layer[4])]


def _check_relu(key: str, layer: str) -> None:
    if layer not in LAYER_INDEX or not layer.startswith(("relu", "conv")):
        raise ConfigError(f"{key}: not a VGG-19 conv/relu layer: {layer!r}")


# ----------------------------------------------------------------------------- config


@dataclass
class CropConfig:
    """Paired crops of photos and MDAN outputs (Sec. 3.2); defaults as in the original code."""

    size: int = 128  # crop side in pixels (D sees its 32x32 relu3_1 map)
    stride: int = 64  # grid stride; crops flush with the border are added
    angles: tuple[float, ...] = (-10.0, 0.0, 10.0)  # rotations (degrees)
    scales: tuple[float, ...] = (1 / 1.1, 1.0, 1.1)  # rescalings
    flip: bool = True  # horizontal mirror copies

    def validate(self) -> None:
        if self.size < 32 or self.size % 8:
            raise ConfigError(f"size: must be a multiple of 8 and >= 32, got {self.size}")
        if self.stride < 1:
            raise ConfigError(f"stride: must be >= 1, got {self.stride}")
        if not self.angles or not self.scales or any(s <= 0 for s in self.scales):
            raise ConfigError("angles and scales must be non-empty lists, scales > 0")


@dataclass
class TrainConfig:
    """G/D optimisation (Sec. 3.2, 5); defaults are the paper's and the original code's."""

    lr: float = 0.02  # Adam lr of G
    d_lr: float = 0.02  # Adam lr of D
    beta1: float = 0.5
    batch: int = 64  # crops per step and process (torchrun with N processes: N x batch per step)
    epochs: int = 5  # passes over all crops (each in a (seed, epoch)-determined order)
    max_steps: int | None = None  # if set, train exactly this many steps instead of `epochs`
    pixel_weight: float = 0.99  # MSE to the MDAN crop, [-1, 1] pixels ("pixel VAE")
    adv_weight: float = 0.01  # hinge loss of D's scores on G's relu3_1 patches (original: 0.0099)
    feature_weight: float = 0.0  # MSE of VGG features to the MDAN crop's ("neural VAE"); off in the original
    feature_layer: str = "relu3_1"  # layer of the feature loss (Caffe-scale features: use a small weight)
    d_layer: str = "relu3_1"  # VGG layer D looks at
    d_hidden: tuple[int, ...] = (256, 512)  # widths of D's two strided convs
    d_ring: int = 1  # outer ring of D's score map that is ignored (patches in the padding)
    precision: str = "auto"  # "bf16": bf16 VGG weights + bf16 autocast for G and D; "fp32"; "auto": bf16 where native
    channels_last: bool = True
    seed: int = 0  # G/D init and data order
    feature_cache_mb: int = 4096  # cache encoder features of the fixed crops up to this many MB
    log_every: int = 10  # steps between log lines / metrics.jsonl rows
    sample_every: int = 100  # steps between sample grids (0: only first and last)
    checkpoint_every: int = 100  # steps between writes of checkpoint-latest.pt
    snapshot_every: int = 1000  # steps between kept checkpoint-NNNNNN.pt files (0: none)

    def validate(self) -> None:
        for name in ("lr", "d_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"beta1: must be in [0, 1), got {self.beta1}")
        if self.batch < 1 or self.epochs < 1:
            raise ConfigError(f"batch and epochs must be >= 1, got {self.batch} and {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps: must be >= 1 or null, got {self.max_steps}")
        for name in ("pixel_weight", "adv_weight", "feature_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.pixel_weight + self.adv_weight + self.feature_weight <= 0:
            raise ConfigError("pixel_weight, adv_weight and feature_weight are all 0: nothing to train")
        _check_relu("feature_layer", self.feature_layer)
        _check_relu("d_layer", self.d_layer)
        if len(self.d_hidden) != 2 or min(self.d_hidden) < 1:
            raise ConfigError(f"d_hidden: must be two widths >= 1, got {list(self.d_hidden)}")
        if self.d_ring < 0:
            raise ConfigError(f"d_ring: must be >= 0, got {self.d_ring}")
        prec.check(self.precision)
        if self.feature_cache_mb < 0:
            raise ConfigError(f"feature_cache_mb: must be >= 0, got {self.feature_cache_mb}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("log_every and checkpoint_every must be >= 1")
        if self.sample_every < 0 or self.snapshot_every < 0:
            raise ConfigError("sample_every and snapshot_every must be >= 0")


@dataclass
class WandbConfig:
    """Weights & Biases logging; off unless ``enabled``, offline unless ``mode: online``."""

    enabled: bool = False
    project: str = "mgan"
    entity: str | None = None
    mode: str = "offline"

    def validate(self) -> None:
        if self.mode not in ("offline", "online"):
            raise ConfigError(f"mode: must be 'offline' or 'online', got {self.mode!r}")


@dataclass
class ExperimentConfig:
    """One MGAN experiment: data, the four stages' options, logging.

    Paths (``style``, ``*_photos``) are relative to ``data_root``; a relative
    ``data_root`` is relative to the parent of the config file's folder (the project
    root for ``experiments/*.yaml``), so a command works from any directory.
    """

    name: str = "mgan"
    data_root: str = "../shared/data"
    style: str = "style/picasso.jpg"
    warmup_photos: str | None = "imagenet100/initial"  # D warm-up photos (outputs discarded)
    train_photos: str = "imagenet100/train"
    max_photos: int | None = None  # use only the first N training photos (sorted by name)
    warmup_iterations: int | None = None  # MDAN iterations per warm-up photo (None: mdan.iterations)
    sample_photos: str | None = "imagenet100/test"  # held-out photos for sample grids
    sample_count: int = 4  # how many of them (sorted by name)
    sample_size: int = 256  # their longest side (multiple of 8)
    sample_mdan: bool = True  # run MDAN on the sample photos too, to show G next to MDAN
    mdan: MDANConfig = field(default_factory=MDANConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name):
            raise ConfigError(f"name: only letters, digits, '.', '_' and '-' allowed, got {self.name!r}")
        if self.max_photos is not None and self.max_photos < 1:
            raise ConfigError(f"max_photos: must be >= 1 or null, got {self.max_photos}")
        if self.warmup_iterations is not None and self.warmup_iterations < 0:
            raise ConfigError(f"warmup_iterations: must be >= 0 or null, got {self.warmup_iterations}")
        if self.sample_count < 0:
            raise ConfigError(f"sample_count: must be >= 0, got {self.sample_count}")
        if self.sample_size < 32 or self.sample_size % 8:
            raise ConfigError(f"sample_size: must be a multiple of 8 and >= 32, got {self.sample_size}")
        m = self.model
        _check_relu("model.encoder_layer", m.encoder_layer)
        if not m.channels or min(m.channels) < 1:
            raise ConfigError(f"model.channels: must be widths >= 1, got {list(m.channels)}")
        if layer_scale(m.encoder_layer) != 2 ** len(m.channels):
            raise ConfigError(
                f"model.channels: {len(m.channels)} widths give x{2 ** len(m.channels)} upsampling but "
                f"{m.encoder_layer} is at 1/{layer_scale(m.encoder_layer)}"
            )
        if m.in_channels != _relu_channels(m.encoder_layer):
            raise ConfigError(f"model.in_channels: {m.encoder_layer} has {_relu_channels(m.encoder_layer)} channels, "
                              f"got {m.in_channels}")
        if m.pooling not in ("max", "avg"):
            raise ConfigError(f"model.pooling: must be 'max' or 'avg', got {m.pooling!r}")
        if self.crops.size % (2 ** len(m.channels)):
            raise ConfigError(f"crops.size: must be a multiple of {2 ** len(m.channels)}, got {self.crops.size}")
        if self.crops.size // layer_scale(self.train.d_layer) < 4:
            raise ConfigError(f"crops.size: {self.crops.size} px gives a {self.train.d_layer} map below D's 4x4 minimum")
        if self.mdan.size < self.crops.size:
            raise ConfigError(f"mdan.size ({self.mdan.size}) is smaller than crops.size ({self.crops.size}): no crops")


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> ExperimentConfig:
    """YAML file (or ``base`` dict) + ``key=value`` overrides -> validated :class:`ExperimentConfig`."""
    data = copy.deepcopy(base) if base is not None else load_yaml(path)
    apply_overrides(data, overrides or [])
    return from_dict(ExperimentConfig, data)


# ----------------------------------------------------------------------------- paths and keys


@dataclass
class Paths:
    """Resolved inputs of an experiment."""

    data_root: Path
    style: Path
    warmup: list[Path]
    train: list[Path]
    samples: list[Path]


def resolve_data_root(cfg: ExperimentConfig, config_path: Path | None, cli_root: str | None) -> Path:
    """``--data-root`` (relative to the CWD) beats the config's ``data_root`` (relative to the
    parent of the config file's folder); absolute paths are used as they are."""
    if cli_root is not None:
        return Path(cli_root).expanduser().resolve()
    root = Path(cfg.data_root).expanduser()
    if not root.is_absolute():
        anchor = config_path.resolve().parent.parent if config_path is not None else Path.cwd()
        root = anchor / root
    return root.resolve()


def resolve_paths(cfg: ExperimentConfig, data_root: Path) -> Paths:
    """Find the style image and photo lists; InputError names what is missing."""
    if not data_root.is_dir():
        raise io.InputError(f"data folder not found: {data_root} (set data_root in the config or pass --data-root)")

    def under(rel: str) -> Path:
        p = Path(rel).expanduser()
        return p if p.is_absolute() else data_root / p

    style = under(cfg.style)
    if not style.is_file():
        raise io.InputError(f"style image not found: {style}")
    warm = io.list_images(under(cfg.warmup_photos)) if cfg.warmup_photos else []
    train = io.list_images(under(cfg.train_photos))
    if cfg.max_photos is not None:
        train = train[: cfg.max_photos]
    stems = [p.stem for p in train]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise io.InputError(f"two training photos share the name {dup!r}; MDAN outputs are named by it")
    samples = io.list_images(under(cfg.sample_photos))[: cfg.sample_count] if cfg.sample_photos and cfg.sample_count else []
    return Paths(data_root, style, warm, train, samples)


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def _key(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


UNGUIDED_ONLY = frozenset({"noise_std", "unguided_tv_weight"})  # MDANConfig fields that guided synthesis ignores


def resolve_precision(cfg: ExperimentConfig, device: torch.device) -> ExperimentConfig:
    """``cfg`` with ``"auto"`` precisions (``mdan.precision``, ``train.precision``) replaced by
    what this machine runs natively (:mod:`mgan.precision`).

    Done before the cache keys and the run's ``config.yaml``: MDAN targets made in bf16
    are not those made in fp32, and a run resumed on another kind of machine keeps the
    precision it started with.
    """
    return dataclasses.replace(
        cfg,
        mdan=dataclasses.replace(cfg.mdan, precision=prec.resolve(cfg.mdan.precision, device)),
        train=dataclasses.replace(cfg.train, precision=prec.resolve(cfg.train.precision, device)),
    )


def cache_keys(cfg: ExperimentConfig, paths: Paths) -> dict[str, str]:
    """Keys of the cached stages: ``mdan`` (targets), ``samples`` (MDAN of sample photos), ``crops``."""
    files = lambda ps: [(p.name, _digest(p)) for p in ps]  # noqa: E731
    # Stage 1 is guided synthesis only: options of unguided synthesis do not change its outputs.
    mdan_opts = {k: v for k, v in to_dict(cfg.mdan).items() if k not in UNGUIDED_ONLY}
    mdan = _key({"style": (paths.style.name, _digest(paths.style)), "mdan": mdan_opts,
                 "warmup": files(paths.warmup), "warmup_iterations": cfg.warmup_iterations,
                 "train": files(paths.train)})
    return {
        "mdan": mdan,
        "samples": _key({"mdan": mdan, "samples": files(paths.samples), "size": cfg.sample_size}),
        "crops": _key({"mdan": mdan, "crops": to_dict(cfg.crops)}),
    }


# ----------------------------------------------------------------------------- stages 1-2


@functools.lru_cache(maxsize=4)
def shared_encoder(taps: tuple[str, ...], weights: str, pooling: str, precision: str, channels_last: bool,
                   device: str):
    """A frozen VGG-19 encoder, built once per process for each setting (it is stateless and
    building one takes seconds), shared by the MDAN stage, training and sampling."""
    from mgan.vgg import VGG19Encoder  # noqa: PLC0415

    return VGG19Encoder(taps, weights=weights, pooling=pooling, precision=precision,
                        channels_last=channels_last).to(device)


class _Clock:
    """Wall and process-CPU seconds since creation. CPU time counts every thread, so on a
    shared machine ``cpu_seconds / threads`` estimates the wall time a stage would take alone."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": time.process_time() - self.cpu}


def _done_times(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    return {"seconds": float(data.get("seconds", 0.0)), "cpu_seconds": float(data.get("cpu_seconds", 0.0))}


def _mdan_engine(cfg: ExperimentConfig, paths: Paths, device: torch.device):
    from mgan.mdan import MDAN  # noqa: PLC0415

    m = cfg.mdan
    style = io.load_image(paths.style, max_side=m.style_size, min_side=m.min_side)
    taps = tuple(sorted({m.d_layer, m.content_layer}, key=LAYER_INDEX.get))
    enc = shared_encoder(taps, m.vgg_weights, m.pooling, prec.resolve(m.precision, device), True, str(device))
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
    clock = _Clock()
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
    clock = _Clock()
    io.check_writable(folder)
    d_path = _d_file(folder, d)
    if not d_path.is_file():
        source = _d_file(targets, d)
        with io.atomic_write(d_path) as f:
            f.write((source if source.is_file() else targets / "mdan_D.pt").read_bytes())
    mdan = _mdan_engine(cfg, paths, device)
    run_batch(mdan, paths.samples[d.rank :: d.world], folder, cfg.sample_size, cfg.mdan.iterations, d_path=d_path,
              progress=progress and d.main)
    times = clock.read()
    _finish_stage(folder, d, {"photos": len(paths.samples), "ranks": d.world, **times})
    return times


def _load_photo(path: Path, cfg: ExperimentConfig, size: int | None = None) -> Tensor:
    """A photo exactly as MDAN's batch mode loads it (longest side, multiple of 8)."""
    return io.load_image(path, max_side=size or cfg.mdan.size, multiple=8, min_side=cfg.mdan.min_side)


def _pairs(cfg: ExperimentConfig, paths: Paths, targets: Path) -> Iterator[tuple[str, Tensor, Tensor]]:
    for p in paths.train:
        photo = _load_photo(p, cfg)
        target = io.load_image(targets / f"{p.stem}.png")
        if target.shape != photo.shape:
            raise io.InputError(f"MDAN output {targets / p.stem}.png is {tuple(target.shape[-2:])}, "
                                f"its photo {tuple(photo.shape[-2:])}; delete the cache folder {targets.parent}")
        yield p.name, photo, target


def stage_crops(cfg: ExperimentConfig, paths: Paths, targets: Path, path: Path) -> tuple[CropSet, dict[str, float]]:
    """Stage 2: paired crops (built once, then loaded from ``path``); returns ``(crops, build times)``."""
    clock = _Clock()
    if path.is_file():
        state = io.load_checkpoint(path)
        try:
            times = {k: float(state.get(k, 0.0)) for k in ("seconds", "cpu_seconds")}
            return CropSet.from_state_dict(state), times
        except (ValueError, KeyError) as exc:
            raise io.InputError(f"{path}: {exc}; delete it to rebuild") from None
    c = cfg.crops
    crops = build_crop_set(_pairs(cfg, paths, targets), c.size, c.stride, augmentations(c.angles, c.scales, c.flip))
    times = clock.read()
    with io.atomic_write(path) as f:  # streamed: the crops can be GBs, no second copy in memory
        torch.save({**crops.state_dict(), **times}, f)
    return crops, times


def estimate_crops(cfg: ExperimentConfig, paths: Paths) -> int:
    """Number of crops stage 2 will make, from image sizes only (for ``--dry-run``)."""
    from PIL import Image  # noqa: PLC0415

    c = cfg.crops
    total = 0
    for p in paths.train:
        with Image.open(p) as img:
            w, h = img.size
        s = cfg.mdan.size / max(w, h)
        w, h = round(w * s) // 8 * 8, round(h * s) // 8 * 8
        for _, scale, _ in augmentations(c.angles, c.scales, c.flip):
            total += len(crop_grid(max(1, round(h * scale)), max(1, round(w * scale)), c.size, c.stride))
    return total


# ----------------------------------------------------------------------------- images


def make_grid(rows: list[list[Tensor]], pad: int = 4, background: float = 1.0) -> Tensor:
    """Tile images ``[1, 3, h, w]`` of any sizes into one ``[1, 3, H, W]``: row ``r``, column ``c``
    holds ``rows[r][c]``, centred in a cell as large as the largest image of its row and column."""
    ncol = max(len(r) for r in rows)
    heights = [max(im.shape[-2] for im in r) for r in rows]
    widths = [max((r[c].shape[-1] for r in rows if c < len(r)), default=0) for c in range(ncol)]
    H = sum(heights) + pad * (len(rows) + 1)
    W = sum(widths) + pad * (ncol + 1)
    out = torch.full((1, 3, H, W), float(background))
    y = pad
    for r, row in enumerate(rows):
        x = pad
        for c in range(ncol):
            if c < len(row):
                im = row[c].detach().float().cpu().clamp(0, 1)
                h, w = im.shape[-2:]
                oy, ox = y + (heights[r] - h) // 2, x + (widths[c] - w) // 2
                out[..., oy : oy + h, ox : ox + w] = im
            x += widths[c] + pad
        y += heights[r] + pad
    return out


# ----------------------------------------------------------------------------- training


class Trainer:
    """Trains G and D on paired crops (paper Sec. 3.2).

    Per step, on a batch of crops (``B x 3 x S x S``):

    - ``x = relu4_1(photo crop)`` ``[B, 512, S/8, S/8]`` (frozen VGG, cached when it fits)
    - ``y = G(x)`` ``[B, 3, S, S]`` in ``[-1, 1]``; ``phi(y) = relu3_1(y)`` ``[B, 256, S/4, S/4]``
    - D step: ``hinge(D(phi(target)), +1) + hinge(D(phi(y)), -1)`` over the masked score maps
    - G step: ``pixel_weight * MSE(y, target) + adv_weight * hinge(D(phi(y)), +1)
      [+ feature_weight * MSE(phi_f(y), phi_f(target))]``

    The data order of epoch ``e`` is :func:`mgan.data.epoch_order` ``(K, seed, e)``; the
    checkpoint holds G, D, both Adam states, the step and the RNG state, so a resumed run
    continues bit-exactly (fp32, same machine).

    Under ``torchrun`` (``dist.world = N``) a step takes ``N * batch`` crops of that order
    and rank ``r`` trains on the ``r``-th slice of ``batch``; G and D are wrapped in
    ``DistributedDataParallel`` with globally synchronised BatchNorm
    (:mod:`mgan.distributed`), so the update equals one process's with batch ``N * batch``.
    """

    def __init__(self, cfg: ExperimentConfig, crops: CropSet, device: torch.device | str = "cpu",
                 progress: bool = True, dist: distributed.Dist | None = None) -> None:
        t = cfg.train
        self.cfg, self.crops, self.device, self.progress = cfg, crops, torch.device(device), progress
        self.dist = dist or distributed.Dist()
        self.global_batch = t.batch * self.dist.world
        if crops.size != cfg.crops.size:
            raise io.InputError(f"crops are {crops.size}px but crops.size is {cfg.crops.size}")
        if len(crops) < self.global_batch:
            raise io.InputError(f"only {len(crops)} crops, fewer than one batch of {self.global_batch}; "
                                "use more or larger photos or a smaller train.batch")
        self.precision = prec.resolve(t.precision, self.device)  # "auto" -> "bf16" / "fp32"
        self.bf16 = self.precision == "bf16"
        self.fmt = torch.channels_last if t.channels_last else torch.contiguous_format
        torch.manual_seed(t.seed)  # G's and D's DCGAN init draw from the global RNG
        self.G = Generator(cfg.model).to(self.device, memory_format=self.fmt)
        self.D = MGANDiscriminator(_relu_channels(t.d_layer), tuple(t.d_hidden), t.d_ring).to(
            self.device, memory_format=self.fmt)
        # what train_step runs: G and D themselves, or their DDP wrappers (the same modules)
        self.G_step, self.D_step = self.G, self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

            ids = [self.device.index] if self.device.type == "cuda" else None
            for net in (self.G, self.D):
                distributed.convert_sync_bn(net)
            # BN statistics are global, so every rank's buffers agree: nothing to broadcast
            self.G_step = DDP(self.G, device_ids=ids, forward_sync_buffers=False)
            self.D_step = DDP(self.D, device_ids=ids, forward_sync_buffers=False)
        self.in_layer = cfg.model.encoder_layer
        self.use_d = t.adv_weight > 0
        self.use_feat = t.feature_weight > 0
        wanted = ({t.d_layer} if self.use_d else set()) | ({t.feature_layer} if self.use_feat else set())
        self.fake_layers = sorted(wanted, key=LAYER_INDEX.get)
        self.real_layers = self.fake_layers
        taps = tuple(sorted({self.in_layer, t.d_layer, t.feature_layer}, key=LAYER_INDEX.get))
        self.encoder = shared_encoder(taps, cfg.model.vgg_weights, cfg.model.pooling, self.precision,
                                      t.channels_last, str(self.device))
        betas = (t.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=betas)
        self.step = 0
        self.steps_per_epoch = len(crops) // self.global_batch  # the last partial batch of an epoch is dropped
        self.total_steps = t.max_steps if t.max_steps is not None else t.epochs * self.steps_per_epoch
        self.cache_in: Tensor | None = None
        self.cache_real: dict[str, Tensor] = {}
        self._order: tuple[int, Tensor] | None = None

    # -- data

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _encode(self, x: Tensor, layers: list[str]) -> dict[str, Tensor]:
        return self.encoder(x.to(self.device).contiguous(memory_format=self.fmt), layers)

    def cache_bytes(self) -> tuple[int, int]:
        """Bytes needed to cache G's input features and D's real features of all crops."""
        k, s = len(self.crops), self.crops.size
        itemsize = 2 if self.bf16 else 4
        per_in = _relu_channels(self.in_layer) * (s // layer_scale(self.in_layer)) ** 2
        per_real = sum(_relu_channels(n) * (s // layer_scale(n)) ** 2 for n in self.real_layers)
        return k * per_in * itemsize, k * per_real * itemsize

    @torch.no_grad()
    def build_feature_cache(self, chunk: int = 32) -> dict[str, float]:
        """Encode the fixed crops once, if they fit ``train.feature_cache_mb``: G's input
        features first, then D's real features. Returns the wall and CPU seconds spent."""
        budget = self.cfg.train.feature_cache_mb * 2**20
        need_in, need_real = self.cache_bytes()
        want_in = need_in <= budget
        want_real = want_in and bool(self.real_layers) and need_in + need_real <= budget
        if not want_in:
            return {}
        from tqdm import tqdm  # noqa: PLC0415

        clock = _Clock()
        k = len(self.crops)
        ins, reals = [], {n: [] for n in self.real_layers}
        for i in tqdm(range(0, k, chunk), desc="feature cache", disable=not self.progress, leave=False,
                      dynamic_ncols=True, file=sys.stderr):
            idx = torch.arange(i, min(k, i + chunk))
            photo, target = self.crops.batch(idx)
            ins.append(self._encode(photo, [self.in_layer])[self.in_layer].contiguous())
            if want_real:
                f = self._encode(target, self.real_layers)
                for n in self.real_layers:
                    reals[n].append(f[n].contiguous())
        self.cache_in = torch.cat(ins)
        if want_real:
            self.cache_real = {n: torch.cat(v) for n, v in reals.items()}
        return clock.read()

    def batch_indices(self, step: int) -> Tensor:
        """This rank's crop indices of step ``step``: slice ``step % steps_per_epoch`` of epoch
        ``step // steps_per_epoch``'s order is the global batch, and rank ``r`` takes its ``r``-th part."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.crops), self.cfg.train.seed, epoch))
        b = self.cfg.train.batch
        start = pos * self.global_batch + self.dist.rank * b
        return self._order[1][start : start + b]

    # -- one step

    def train_step(self, idx: Tensor) -> dict[str, float]:
        """One D step and one G step on crops ``idx``; returns the losses and mean D scores
        (averaged over the ranks)."""
        t = self.cfg.train
        photo, target = self.crops.batch(idx)
        target = target.to(self.device)
        with torch.no_grad():
            if self.cache_in is not None:
                x = self.cache_in[idx.to(self.cache_in.device)].to(self.device)
            else:
                x = self._encode(photo, [self.in_layer])[self.in_layer]
            if self.real_layers and self.cache_real:
                real = {n: v[idx.to(v.device)].to(self.device) for n, v in self.cache_real.items()}
            elif self.real_layers:
                real = self._encode(target, self.real_layers)
            else:
                real = {}
        x = x.contiguous(memory_format=self.fmt)
        with self._autocast():
            y = self.G_step(x)  # [B, 3, S, S] in [-1, 1]
        out = {}
        fake = self.encoder((y.float() + 1) / 2, self.fake_layers) if self.fake_layers else {}
        if self.use_d:
            # D step: real MDAN patches +1, G's patches -1 (hinge, nn.MarginCriterion(1))
            with self._autocast():
                s_real = self.D.masked(self.D_step(real[t.d_layer].contiguous(memory_format=self.fmt)))
                s_fake = self.D.masked(self.D_step(fake[t.d_layer].detach()))
            loss_d = losses.hinge(s_real, 1.0) + losses.hinge(s_fake, -1.0)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            out.update(loss_d=loss_d.item(), d_real=s_real.float().mean().item(), d_fake=s_fake.float().mean().item())
        # G step against the updated D (no D weight gradients needed: D itself, not its DDP wrapper)
        loss_pix = F.mse_loss(y.float(), target * 2 - 1)
        loss = t.pixel_weight * loss_pix
        out["loss_pix"] = loss_pix.item()
        if self.use_d:
            self.D.requires_grad_(False)
            with self._autocast():
                loss_adv = losses.hinge(self.D.masked(self.D(fake[t.d_layer])), 1.0)
            self.D.requires_grad_(True)
            loss = loss + t.adv_weight * loss_adv
            out["loss_adv"] = loss_adv.item()
        if self.use_feat:
            loss_feat = losses.content_loss(fake[t.feature_layer], real[t.feature_layer])
            loss = loss + t.feature_weight * loss_feat
            out["loss_feat"] = loss_feat.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        out["loss_g"] = loss.item()
        return distributed.mean_over_ranks(out, self.dist, self.device)

    # -- samples

    @torch.no_grad()
    def generate(self, feat: Tensor, bn: str = "eval") -> Tensor:
        """Decode features ``[1, C, h, w]`` to an image ``[1, 3, 8h, 8w]`` in ``[0, 1]``.

        ``bn="eval"``: BatchNorm uses its running statistics (how releases decode);
        ``bn="batch"``: the image's own statistics, as the original code left BN at test
        time. Neither changes G (the batch mode runs on a copy).
        """
        G = self.G
        if bn == "batch":  # a copy only this rank runs: its BN must not wait for the others
            G = distributed.local_bn(copy.deepcopy(self.G).train())
        was_training = self.G.training
        if bn == "eval":
            G.eval()
        with self._autocast():
            y = G(feat.to(self.device).contiguous(memory_format=self.fmt))
        self.G.train(was_training)
        return Generator.to_image(y).cpu()

    # -- state

    def state_dict(self) -> dict:
        """The resume dict: plain tensors and data, loadable with ``weights_only=True``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "num_crops": len(self.crops),
            "world_size": self.dist.world,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "config": to_dict(self.cfg),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; a checkpoint of other data or nets -> InputError."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise io.InputError(f"not an mgan training checkpoint (format {state.get('format')!r})")
        if state["num_crops"] != len(self.crops) or state["steps_per_epoch"] != self.steps_per_epoch:
            raise io.InputError(f"checkpoint was trained on {state['num_crops']} crops / {state['steps_per_epoch']} "
                                f"steps per epoch, this run has {len(self.crops)} / {self.steps_per_epoch} "
                                "(resume with the same crops and the same global batch, processes x train.batch)")
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise io.InputError(f"checkpoint does not fit this model: {str(exc).splitlines()[0][:200]}") from None
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])


# ----------------------------------------------------------------------------- run folders


def next_run_dir(outdir: Path, name: str) -> Path:
    """Create and return ``outdir/NNNNN-name`` with the next free number."""
    outdir.mkdir(parents=True, exist_ok=True)
    while True:
        nums = [int(m.group(1)) for p in outdir.iterdir() if (m := RUN_NAME.match(p.name))]
        run = outdir / f"{max(nums, default=-1) + 1:05d}-{name}"
        try:
            run.mkdir()
            return run
        except FileExistsError:  # another process took the number
            continue


def find_matching_run(outdir: Path, cfg: ExperimentConfig) -> Path | None:
    """Newest run folder of this experiment whose resolved config equals ``cfg``."""
    if not outdir.is_dir():
        return None
    want = to_dict(cfg)
    runs = sorted((p for p in outdir.iterdir() if (m := RUN_NAME.match(p.name)) and m.group(2) == cfg.name),
                  reverse=True)
    for run in runs:
        try:
            if (run / "config.yaml").is_file() and to_dict(load_config(run / "config.yaml")) == want:
                return run
        except ConfigError:
            continue
    return None


class _Metrics:
    """``metrics.jsonl`` writer; on resume, rows past the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is not None and path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            with io.atomic_write(path, "w") as f:
                f.write("".join(ln + "\n" for ln in keep))
        self.file = path.open("a")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class _Wandb:
    """Thin optional wandb logger (imported only when the config enables it)."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path) -> None:
        self.run = None
        if not cfg.wandb.enabled:
            return
        from mgan.extras import require  # noqa: PLC0415

        wandb = require("wandb", "wandb logging (wandb.enabled)")  # the [wandb] extra

        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        id_file.write_text(run_id)
        self.wandb = wandb
        self.run = wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, mode=cfg.wandb.mode,
                              dir=str(run_dir), name=run_dir.name, id=run_id, resume="allow", config=to_dict(cfg))

    def log(self, row: dict, step: int, image: Tensor | None = None) -> None:
        if self.run is None:
            return
        data = dict(row)
        if image is not None:
            data["samples"] = self.wandb.Image(io.to_uint8(image))
        self.run.log(data, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class Samples:
    """Held-out photos for sample grids: photos ``[1,3,h,w]``, their G input features, MDAN outputs."""

    names: list[str]
    photos: list[Tensor]
    feats: list[Tensor]
    mdan: list[Tensor | None]


def load_samples(trainer: Trainer, cfg: ExperimentConfig, paths: Paths, mdan_dir: Path | None) -> Samples:
    names, photos, feats, outs = [], [], [], []
    for p in paths.samples:
        photo = _load_photo(p, cfg, cfg.sample_size)
        names.append(p.stem)
        photos.append(photo)
        with torch.no_grad():
            feats.append(trainer._encode(photo, [trainer.in_layer])[trainer.in_layer].cpu())
        out = mdan_dir / f"{p.stem}.png" if mdan_dir is not None else None
        outs.append(io.load_image(out) if out is not None and out.is_file() else None)
    return Samples(names, photos, feats, outs)


def sample_grid(trainer: Trainer, samples: Samples) -> Tensor:
    """Rows: photos; MDAN outputs (if any); G with BN running stats (eval); G with per-image BN stats."""
    rows = [samples.photos]
    if any(m is not None for m in samples.mdan):
        rows.append([m if m is not None else torch.ones_like(p) for m, p in zip(samples.mdan, samples.photos, strict=True)])
    rows.append([trainer.generate(f, "eval") for f in samples.feats])
    rows.append([trainer.generate(f, "batch") for f in samples.feats])
    return make_grid(rows)


def _log_line(step: int, total: int, row: dict) -> str:
    keys = ("loss_g", "loss_pix", "loss_adv", "loss_feat", "loss_d", "d_real", "d_fake", "sec_per_step")
    return f"step {step}/{total} " + " ".join(f"{k}={row[k]:.4g}" for k in keys if k in row)


class NonFiniteLoss(FloatingPointError):
    """A loss became NaN or infinite; the run stopped without checkpointing that step."""


def fit(trainer: Trainer, run_dir: Path, samples: Samples | None, progress: bool = True) -> bool:
    """Train to ``trainer.total_steps`` with logging, samples and checkpoints in ``run_dir``.

    Returns False if stopped by SIGINT/SIGTERM (after writing ``checkpoint-latest.pt``).
    Raises :class:`NonFiniteLoss` at the first step whose loss is NaN or infinite, leaving
    the last checkpoint (written before that step) as it is. Only rank 0 writes; every
    rank sees the same (rank-averaged) losses and stop requests, so all stop together.
    """
    from tqdm import tqdm  # noqa: PLC0415

    t = trainer.cfg.train
    d, main_rank = trainer.dist, trainer.dist.main
    metrics = _Metrics(run_dir / "metrics.jsonl", trainer.step if trainer.step else None) if main_rank else None
    wb = _Wandb(trainer.cfg, run_dir) if main_rank else None
    stop = {"flag": False}
    handlers = {}

    def request_stop(signum, frame):  # noqa: ARG001
        stop["flag"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread
            pass

    def save_samples(step: int) -> None:
        if not main_rank or samples is None or not samples.photos:
            return
        grid = sample_grid(trainer, samples)
        io.save_image(grid, run_dir / "samples" / f"step-{step:06d}.png")
        wb.log({}, step, grid)

    def checkpoint(name: str) -> None:
        if main_rank:
            io.save_checkpoint(trainer.state_dict(), run_dir / name)

    acc: dict[str, float] = {}
    n_acc, t_last = 0, time.perf_counter()
    saved = trainer.step
    bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="train", disable=not (progress and main_rank),
               dynamic_ncols=True, file=sys.stderr)
    try:
        if trainer.step == 0:
            save_samples(0)
        while trainer.step < trainer.total_steps:
            row = trainer.train_step(trainer.batch_indices(trainer.step))
            trainer.step += 1
            step = trainer.step
            bad = sorted(k for k, v in row.items() if not math.isfinite(v))
            if bad:
                kept = (f"keeping the last good checkpoint {run_dir / LATEST} (step {saved})" if saved
                        else "no checkpoint had been written yet")
                raise NonFiniteLoss(f"{bad[0]} became {row[bad[0]]} at step {step}; stopped, {kept}")
            for k, v in row.items():
                acc[k] = acc.get(k, 0.0) + v
            n_acc += 1
            bar.update()
            if step % t.log_every == 0 or step == trainer.total_steps:
                now = time.perf_counter()
                out = {"step": step, "epoch": (step - 1) // trainer.steps_per_epoch,
                       **{k: v / n_acc for k, v in acc.items()}, "sec_per_step": (now - t_last) / n_acc}
                if main_rank:
                    metrics.write(out)
                    wb.log(out, step)
                    bar.set_postfix(pix=f"{out['loss_pix']:.4f}", adv=f"{out.get('loss_adv', 0):.3f}",
                                    d=f"{out.get('loss_d', 0):.3f}")
                    if not progress:
                        print(_log_line(step, trainer.total_steps, out), file=sys.stderr)
                acc, n_acc, t_last = {}, 0, now
            if (t.sample_every and step % t.sample_every == 0) or step == trainer.total_steps:
                save_samples(step)
            last = step == trainer.total_steps
            stopping = distributed.any_rank(stop["flag"], d, trainer.device)
            if step % t.checkpoint_every == 0 or last or stopping:
                checkpoint(LATEST)
                saved = step
            if t.snapshot_every and step % t.snapshot_every == 0:
                checkpoint(f"checkpoint-{step:06d}.pt")
            if stopping and not last:
                return False
        return True
    finally:
        bar.close()
        if main_rank:
            metrics.close()
            wb.finish()
        for sig, h in handlers.items():
            signal.signal(sig, h)


FP16_SAFE_VAR = 2.0**14  # fp16 overflows at 65504; keep BN variances well below it


@torch.no_grad()
def fp16_safe(G: Generator) -> Generator:
    """A copy of G whose BatchNorm running variances fit in fp16, computing the same function.

    Caffe-scale relu4_1 features (BGR 0-255, mean-subtracted; ~100x the original code's
    [-1, 1] input) give the first conv outputs with variances around 1e7, which become
    ``inf`` in an fp16 release and zero the layer. BN is invariant to scaling its input by
    ``s > 0`` once its running mean and variance are scaled by ``s`` and ``s^2`` (``eps``
    aside, negligible at these variances), so each conv before such a BN is scaled by a
    power of two (exact in binary floating point), in eval and in train mode alike.
    """
    G = copy.deepcopy(G)
    mods = list(G.net)
    for conv, bn in zip(mods[:-1], mods[1:], strict=True):
        if not isinstance(bn, torch.nn.BatchNorm2d) or bn.running_var is None:
            continue
        peak = float(bn.running_var.max())
        if peak <= FP16_SAFE_VAR:
            continue
        s = 2.0 ** -math.ceil(0.5 * math.log2(peak / FP16_SAFE_VAR))
        conv.weight.mul_(s)
        if conv.bias is not None:
            conv.bias.mul_(s)
        bn.running_mean.mul_(s)
        bn.running_var.mul_(s * s)
    return G


def release(trainer: Trainer, run_dir: Path, paths: Paths, samples: Samples | None, device: torch.device,
            wall_time_s: float | None = None) -> Path:
    """Stage 4: write G as ``generator.safetensors`` (fp16, see :func:`fp16_safe`) and decode
    the sample photos with it into ``run_dir/decoded/``.

    The metadata holds the experiment config and the model card fields a run knows
    (:func:`mgan.zoo.training_card`: config summary, photos, steps, ``wall_time_s`` of the
    stages so far, hardware), with every absolute path cut to its name: the file is
    meant to be published, the training machine's folders are not."""
    from mgan import zoo  # noqa: PLC0415
    from mgan.decode import Decoder  # noqa: PLC0415

    cfg = trainer.cfg
    experiment = to_dict(cfg)
    card = zoo.training_card(experiment, len(paths.train), trainer.step, wall_time_s, device)
    path = save_release(fp16_safe(trainer.G), run_dir / RELEASE_NAME, card=card, extra=zoo.scrub_paths({
        "style": paths.style.name, "steps": trainer.step, "photos": len(paths.train), "crops": len(trainer.crops),
        "run": run_dir.name, "bn": "eval (running statistics)", "experiment": experiment}))
    if samples is not None and samples.photos:
        dec = Decoder(path, device=device, precision="bf16" if trainer.bf16 else "fp32")
        for name, photo in zip(samples.names, samples.photos, strict=True):
            io.save_image(dec.decode(photo), run_dir / "decoded" / f"{name}.png")
    return path


STAGES = ("mdan", "mdan_samples", "crops", "features", "train", "release")


def _write_timings(run_dir: Path, stages: dict[str, dict[str, float]], extra: dict | None = None) -> None:
    """Update ``timings.json``: ``<stage>_s`` (wall) and ``<stage>_cpu_s`` (process CPU, all
    threads) per stage, and their totals. Training time adds up over resumes; cached stages
    report the time they took when they were built."""
    path = run_dir / "timings.json"
    old = merged_timings(json.loads(path.read_text()) if path.is_file() else {}, stages)
    old.update(extra or {})
    old["threads"] = torch.get_num_threads()
    with io.atomic_write(path, "w") as f:
        json.dump(old, f, indent=1)


def merged_timings(old: dict[str, float], stages: dict[str, dict[str, float]]) -> dict[str, float]:
    """``old`` (a ``timings.json``) updated with this session's ``stages`` and the totals
    (see :func:`_write_timings`); pure, so the release can state its wall time before the
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


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mgan.train",
        description="Train an MGAN generator (Li & Wand 2016, Sec. 3.2): MDAN targets -> paired crops -> "
        "G vs. D -> released safetensors. Every stage that is already done is skipped.",
        epilog="example: python -m mgan.train experiments/quick.yaml --set train.max_steps=200",
    )
    p.add_argument("config", nargs="?", type=Path, help="experiment YAML (omit with --resume RUN_DIR)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.batch=16 (repeatable)")
    p.add_argument("--data-root", help="data folder (relative to the current directory); overrides data_root")
    p.add_argument("--outdir", type=Path, default=Path("runs"), help="where run folders and the stage cache go")
    p.add_argument("--resume", default="auto", metavar="auto|never|PATH",
                   help="auto: continue the newest unfinished run with the same config; never: always a new run; "
                   "PATH: a run folder or checkpoint to continue")
    p.add_argument("--stop-after", choices=("mdan", "crops", "train"), help="stop after this stage")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--dry-run", action="store_true", help="validate config and data, print the plan, write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines instead)")
    p.add_argument("--dist-timeout", type=float, default=360.0, metavar="MIN",
                   help="torchrun: minutes a rank waits for the others at a stage boundary (default 360)")
    return p


def _resume_target(arg: str) -> tuple[Path, Path]:
    """``PATH`` (run folder or checkpoint file) -> ``(run folder, checkpoint)``."""
    path = Path(arg)
    run_dir, ckpt = (path, path / LATEST) if path.is_dir() else (path.parent, path)
    if not ckpt.is_file():
        raise io.InputError(f"--resume {arg}: no checkpoint at {ckpt}")
    if not (run_dir / "config.yaml").is_file():
        raise io.InputError(f"--resume {arg}: {run_dir} has no config.yaml")
    return run_dir, ckpt


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 done, 1 runtime error, 2 bad input, 130 interrupted)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage line
        return int(exc.code or 0)
    try:
        return cli.run(lambda: _run(args), "interrupted; finished stages and the last checkpoint are kept", args=args)
    finally:
        distributed.shutdown()


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
    g = sum(p.numel() for p in Generator(cfg.model).parameters())
    t = cfg.train
    d = sum(p.numel() for p in MGANDiscriminator(_relu_channels(t.d_layer), tuple(t.d_hidden), t.d_ring).parameters())
    ckpt = (g + d) * 4 * 3
    steps = t.max_steps or t.epochs * max(1, n_crops // t.batch)
    snapshots = steps // t.snapshot_every if t.snapshot_every else 0
    return need + ckpt * (2 + snapshots) + g * 2


def check_disk_space(outdir: Path, need: int) -> None:
    """InputError if ``outdir``'s file system has less than ``need`` bytes (+5%) free."""
    free = shutil.disk_usage(outdir).free
    if free < need * 1.05:
        raise io.InputError(f"not enough disk space in {outdir}: this run needs about {need / 2**20:.0f} MB, "
                            f"{free / 2**20:.0f} MB are free")


def _run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise io.InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    resume_dir = resume_ckpt = None
    if args.resume not in ("auto", "never"):
        resume_dir, resume_ckpt = _resume_target(args.resume)
        base = load_yaml(resume_dir / "config.yaml")
        if args.config is not None:
            raise io.InputError("give either a config file or --resume PATH, not both (the run keeps its config)")
        config_path = resume_dir / "config.yaml"
        cfg = load_config(None, args.overrides, base=base)
    elif args.config is None:
        raise io.InputError("a config file is required, e.g. python -m mgan.train experiments/quick.yaml")
    else:
        config_path = args.config
        cfg = load_config(config_path, args.overrides)
    data_root = resolve_data_root(cfg, config_path if resume_dir is None else None, args.data_root)
    cfg = dataclasses.replace(cfg, data_root=str(data_root))  # the run's config.yaml is self-contained
    paths = resolve_paths(cfg, data_root)
    # every photo opens and is large enough (headers only), before anything else happens,
    # also for --dry-run, which reads their sizes for its crop estimate
    for photo in (paths.style, *paths.warmup, *paths.train, *paths.samples):
        io.probe_image(photo, min_side=cfg.mdan.min_side)
    from mgan.mdan import resolve_device  # noqa: PLC0415

    if cfg.wandb.enabled:  # a missing [wandb] extra is reported now, not hours later in the training stage
        from mgan.extras import require  # noqa: PLC0415

        require("wandb", "wandb logging (wandb.enabled)")
    d, device = distributed.init(resolve_device(args.device), args.dist_timeout)
    progress = not args.no_progress and d.main
    say = functools.partial(print, file=sys.stderr) if d.main else (lambda *a, **k: None)  # noqa: ARG005
    asked = {"train": cfg.train.precision, "mdan": cfg.mdan.precision}  # said once the work starts
    cfg = resolve_precision(cfg, device)
    outdir = args.outdir
    keys = cache_keys(cfg, paths)
    cache = outdir / "cache" / keys["mdan"]
    targets, sample_dir = cache / "targets", cache / f"samples-{keys['samples']}"
    crops_path = cache / f"crops-{keys['crops']}.pt"

    # rank 0 decides which run folder to continue (or that the run is finished); all follow it
    plan = None
    if d.main:
        if resume_dir is None and args.resume == "auto":
            resume_dir = find_matching_run(outdir, cfg)
            resume_ckpt = resume_dir / LATEST if resume_dir is not None and (resume_dir / LATEST).is_file() else None
            if resume_dir is not None and resume_ckpt is None:
                resume_dir = None  # a run that never checkpointed: start a fresh one
        finished = False
        if resume_dir is not None and (resume_dir / RELEASE_NAME).is_file() and resume_ckpt is not None:
            state = io.load_checkpoint(resume_ckpt)
            finished = state.get("step") == state.get("total_steps") and args.resume == "auto"
        plan = (resume_dir, resume_ckpt, finished)
    resume_dir, resume_ckpt, finished = distributed.broadcast(plan, d)

    if args.dry_run:
        if not d.main:
            return 0
        print(dump_yaml(cfg), end="")
        print(f"# data: {data_root}\n#   style {paths.style.name}, {len(paths.warmup)} warm-up, {len(paths.train)} "
              f"training and {len(paths.samples)} sample photos")
        n = estimate_crops(cfg, paths)
        steps = cfg.train.max_steps or cfg.train.epochs * (n // cfg.train.batch)
        print(f"# stage 1 MDAN targets: {'cached' if (targets / 'DONE.json').is_file() else 'to do'} in {targets}")
        if paths.samples and cfg.sample_mdan:
            print(f"# stage 1b MDAN of samples: {'cached' if (sample_dir / 'DONE.json').is_file() else 'to do'}")
        print(f"# stage 2 crops: ~{n} crops, {'cached' if crops_path.is_file() else 'to do'} in {crops_path}")
        where = f"resume {resume_dir}" if resume_dir else f"new run folder in {outdir}/"
        print(f"# stage 3 training: {steps} steps of {cfg.train.batch} crops ({where})")
        return 0

    if finished:
        if d.main:
            print(f"already done: {resume_dir / RELEASE_NAME} (use --resume never for a new run)")
        return 0

    # before any work: the output folder is writable and has room; leftovers of a killed run go
    if d.main:
        io.check_writable(outdir)
        done = {"mdan": (targets / "DONE.json").is_file(),
                "samples": not (cfg.sample_mdan and paths.samples) or (sample_dir / "DONE.json").is_file(),
                "crops": crops_path.is_file()}
        check_disk_space(outdir, estimate_disk_bytes(cfg, paths, estimate_crops(cfg, paths), done))
        for folder in (cache, resume_dir):
            if folder is not None:  # both mgan's own: its subfolders (targets/, samples/) too
                io.remove_stale_temps(folder, recursive=True)
    distributed.barrier(d)

    say(prec.describe(asked["train"], device))
    if asked["mdan"] != asked["train"]:
        say(f"MDAN stage {prec.describe(asked['mdan'], device)}")
    timings: dict[str, dict[str, float]] = {}
    timings["mdan"] = stage_mdan(cfg, paths, targets, device, progress, d)
    if cfg.sample_mdan:
        timings["mdan_samples"] = stage_sample_mdan(cfg, paths, targets, sample_dir, device, progress, d)
    if args.stop_after == "mdan":
        say(f"MDAN targets in {targets}")
        return 0
    if not d.main:
        distributed.barrier(d)  # rank 0 builds the crops, the others load them
    crops, timings["crops"] = stage_crops(cfg, paths, targets, crops_path)
    if d.main:
        distributed.barrier(d)
    say(f"{len(crops)} paired crops of {len(crops.files)} photos ({crops_path})")
    if args.stop_after == "crops":
        return 0

    trainer = Trainer(cfg, crops, device, progress, d)
    if resume_dir is not None:
        run_dir = resume_dir
        trainer.load_state_dict(io.load_checkpoint(resume_ckpt))
        say(f"resuming {run_dir} at step {trainer.step}/{trainer.total_steps}")
    else:
        run_dir = distributed.broadcast(next_run_dir(outdir, cfg.name) if d.main else None, d)
    if d.main:
        with io.atomic_write(run_dir / "config.yaml", "w") as f:
            f.write(dump_yaml(cfg))
    timings["features"] = trainer.build_feature_cache()
    samples = load_samples(trainer, cfg, paths, sample_dir if cfg.sample_mdan else None) if d.main else None
    clock = _Clock()
    completed = fit(trainer, run_dir, samples, progress)
    timings["train"] = clock.read()
    if not d.main:
        return 0 if completed else 130
    if not completed:
        _write_timings(run_dir, timings)
        say(f"stopped at step {trainer.step}; resume with: python -m mgan.train --resume {run_dir}")
        return 130
    if args.stop_after == "train":
        _write_timings(run_dir, timings)
        return 0
    timings_file = run_dir / "timings.json"
    so_far = merged_timings(json.loads(timings_file.read_text()) if timings_file.is_file() else {}, timings)
    clock = _Clock()
    path = release(trainer, run_dir, paths, samples, device, wall_time_s=so_far["total_s"])
    timings["release"] = clock.read()
    _write_timings(run_dir, timings, {"steps": trainer.step, "crops": len(crops), "ranks": d.world})
    print(f"released {path} ({path.stat().st_size / 2**20:.1f} MB) after {trainer.step} steps; "
          f"decode with: python -m mgan.decode --model {path} --input PHOTO --out out.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
