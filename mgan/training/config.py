"""The MGAN experiment as configured: one YAML file -> :class:`ExperimentConfig`, and the inputs it names.

An experiment (``experiments/*.yaml``) holds the data, the options of the four stages
(MDAN, crops, model, training) and logging. Paths (``style``, ``*_photos``) are relative
to ``data_root``; a relative ``data_root`` is relative to the parent of the config file's
folder (the project root for ``experiments/*.yaml``), so a command works from any
directory. What a run folder keeps as ``config.yaml`` is the *resolved* config: absolute
``data_root``, and ``"auto"`` precisions replaced by what the machine runs
(:func:`resolve_precision`), so a resumed run or a rerun finds it equal
(:func:`find_matching_run`).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from mgan import io, runs, vgg
from mgan import precision as prec  # `precision` is a field name below
from mgan.config import apply_overrides, check_choices, from_dict, load_yaml, to_dict
from mgan.errors import ConfigError, InputError
from mgan.generator import GeneratorConfig
from mgan.mdan import MDANConfig
from mgan.vgg import layer_scale


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
    # layer of the feature loss; Caffe-scale features, so a small weight: with pixel 0.9 + adv 0.1,
    # 3e-5 collapsed G to a flat colour within 10 steps, 3e-6 trained (docs/training.md)
    feature_layer: str = "relu3_1"
    # squared relative distance of the Gram matrices of G's crop and its MDAN target's at
    # gram_layers (Gatys et al.'s texture statistics, summed over the layers): blind to where a
    # stroke lies, so unlike the pixel and feature MSE it does not average away the strokes the
    # photo does not predict; beside pixel 0.9 + adv 0.1, 0.01 measured closer to the style and
    # 0.03 or more further (docs/training.md, "A Gram term to the target")
    gram_weight: float = 0.0
    gram_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1")
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
    # Weight averaging (SWA, Izmailov et al. 2018; in GANs Yazici et al. 2019): the release is
    # the mean of G's weights at step average_start, every average_every steps after it and at
    # the last step, not G as the last step leaves it (null: no averaging). The picasso256 run
    # with residual blocks: steps 1200 and 1500 averaged decode Perlin noise 3-4% closer to the
    # painting than either (docs/training.md, "A wider G").
    average_start: int | None = None
    average_every: int = 100

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
        weights = ("pixel_weight", "adv_weight", "feature_weight", "gram_weight")
        for name in weights:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if sum(getattr(self, name) for name in weights) <= 0:
            raise ConfigError(f"{', '.join(weights)} are all 0: nothing to train")
        vgg.check_feature_layer(self.feature_layer, "feature_layer")
        if not self.gram_layers:
            raise ConfigError("gram_layers: must name at least one layer")
        for layer in self.gram_layers:
            vgg.check_feature_layer(layer, "gram_layers")
        vgg.check_feature_layer(self.d_layer, "d_layer")
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
        if self.average_every < 1:
            raise ConfigError(f"average_every: must be >= 1, got {self.average_every}")
        if self.average_start is not None and not 1 <= self.average_start <= (self.max_steps or self.average_start):
            raise ConfigError(f"average_start: must be >= 1 and <= max_steps ({self.max_steps}) or null, "
                              f"got {self.average_start}")


@dataclass
class NoiseConfig:
    """Noise pairs: guided MDAN targets of seeded Perlin images, trained on beside the photos.

    The paper trains G on photos only and decodes noise with it (Sec. 5, Fig. 13). A G that
    never saw noise features paints noise as its nearest photo, a field of small even strokes;
    with ``count`` Perlin images at the decoder's scale (:func:`mgan.noise.decode_scale`)
    through the same guided MDAN (D carried on from the photo targets), ``per_batch`` of their
    crops beside each batch of photo crops from step ``start_step`` on, G also fits targets of
    noise. Continued from the bundled Picasso G this brought its Perlin decodes within 1.2x of
    unguided MDAN's SWD; run from scratch it did not (docs/training.md, "Noise pairs" and
    "Training G on noise as well"). Off (``count: 0``) by default, as in the paper.
    """

    count: int = 0  # Perlin images (0: no noise pairs); image i has seed `seed + i`
    size: int = 256  # their side in pixels (MDAN runs at this size)
    scale: float = 128.0  # Perlin's coarsest feature in px: the scale the model's noise is decoded at
    octaves: int = 6  # fBm octaves and persistence, as the decoder's defaults
    persistence: float = 0.5
    seed: int = 200  # first image's seed (kept away from the decoder's 0, 1, ... for held-out checks)
    per_batch: int = 8  # noise crops added to each step's train.batch photo crops (per process)
    start_step: int = 0  # first training step that sees them (0: all)
    # MDAN's content weight for the noise targets (None: mdan.content_weight, as for the photos).
    # 0 keeps the noise only as MDAN's start: targets 37% closer to the painting by SWD, yet the
    # paper's G trained on them decoded noise no closer; with model.blocks 2 it did (docs/training.md)
    content_weight: float | None = None

    def validate(self) -> None:
        if self.count < 0:
            raise ConfigError(f"count: must be >= 0, got {self.count}")
        if self.size < 32 or self.size % 8:
            raise ConfigError(f"size: must be a multiple of 8 and >= 32, got {self.size}")
        if not self.scale > 0:
            raise ConfigError(f"scale: must be > 0, got {self.scale}")
        if self.octaves < 1:
            raise ConfigError(f"octaves: must be >= 1, got {self.octaves}")
        if not 0 < self.persistence <= 1:
            raise ConfigError(f"persistence: must be in (0, 1], got {self.persistence}")
        if self.seed < 0:
            raise ConfigError(f"seed: must be >= 0, got {self.seed}")
        if self.per_batch < 1:
            raise ConfigError(f"per_batch: must be >= 1, got {self.per_batch}")
        if self.start_step < 0:
            raise ConfigError(f"start_step: must be >= 0, got {self.start_step}")
        if self.content_weight is not None and not self.content_weight >= 0:
            raise ConfigError(f"content_weight: must be >= 0 (or null), got {self.content_weight}")


@dataclass
class WandbConfig:
    """Weights & Biases logging; off unless ``enabled``, offline unless ``mode: online``."""

    enabled: bool = False
    project: str = "mgan"
    entity: str | None = None
    mode: Literal["offline", "online"] = "offline"

    def validate(self) -> None:
        check_choices(self)


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
    noise: NoiseConfig = field(default_factory=NoiseConfig)
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
        try:  # G's own checks (a YAML load already ran them; a config built in code has not)
            m.validate()
        except ConfigError as exc:
            raise ConfigError(f"model.{exc}") from None
        if self.crops.size % (2 ** len(m.channels)):
            raise ConfigError(f"crops.size: must be a multiple of {2 ** len(m.channels)}, got {self.crops.size}")
        if self.crops.size // layer_scale(self.train.d_layer) < 4:
            raise ConfigError(f"crops.size: {self.crops.size} px gives a {self.train.d_layer} map below D's 4x4 minimum")
        if self.mdan.size < self.crops.size:
            raise ConfigError(f"mdan.size ({self.mdan.size}) is smaller than crops.size ({self.crops.size}): no crops")
        if self.noise.count and self.noise.size < self.crops.size:
            raise ConfigError(f"noise.size ({self.noise.size}) is smaller than crops.size ({self.crops.size}): no crops")
        if self.noise.count and self.noise.size < self.mdan.min_side:
            raise ConfigError(f"noise.size ({self.noise.size}) is below mdan.min_side ({self.mdan.min_side})")


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> ExperimentConfig:
    """YAML file (or ``base`` dict) + ``key=value`` overrides -> validated :class:`ExperimentConfig`."""
    data = copy.deepcopy(base) if base is not None else load_yaml(path)
    apply_overrides(data, overrides or [])
    return from_dict(ExperimentConfig, data)


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


def find_matching_run(outdir: Path, cfg: ExperimentConfig) -> Path | None:
    """Newest run folder of this experiment (``outdir/NNNNN-<cfg.name>``) whose resolved config equals ``cfg``."""
    want = to_dict(cfg)

    def same_config(run: Path) -> bool:
        try:
            return (run / "config.yaml").is_file() and to_dict(load_config(run / "config.yaml")) == want
        except ConfigError:
            return False

    return runs.find_run(outdir, cfg.name, same_config)


# ----------------------------------------------------------------------------- the inputs


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
        raise InputError(f"data folder not found: {data_root} (set data_root in the config or pass --data-root)")

    def under(rel: str) -> Path:
        p = Path(rel).expanduser()
        return p if p.is_absolute() else data_root / p

    style = under(cfg.style)
    if not style.is_file():
        raise InputError(f"style image not found: {style}")
    warm = io.list_images(under(cfg.warmup_photos)) if cfg.warmup_photos else []
    train = io.list_images(under(cfg.train_photos))
    if cfg.max_photos is not None:
        train = train[: cfg.max_photos]
    stems = [p.stem for p in train]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise InputError(f"two training photos share the name {dup!r}; MDAN outputs are named by it")
    samples = io.list_images(under(cfg.sample_photos))[: cfg.sample_count] if cfg.sample_photos and cfg.sample_count else []
    return Paths(data_root, style, warm, train, samples)


def probe_inputs(cfg: ExperimentConfig, paths: Paths) -> None:
    """InputError unless every image opens and is large enough for MDAN (headers only, so fast)."""
    for photo in (paths.style, *paths.warmup, *paths.train, *paths.samples):
        io.probe_image(photo, min_side=cfg.mdan.min_side)
