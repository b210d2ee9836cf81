"""The MGAN training loop (paper Sec. 3.2 and 5): G against an MGAN discriminator on paired crops.

G decodes the relu4_1 features of a photo crop; its loss is the pixel MSE to the MDAN
crop plus the hinge adversarial loss of a discriminator on relu3_1 of G's output (plus
an optional VGG feature loss, the paper's "neural VAE" metric of Fig. 5), Adam.
:class:`Trainer` is one step and its state; :func:`fit` runs the steps in a run folder
(:mod:`mgan.runs`) with the resolved ``config.yaml``, ``metrics.jsonl``, sample grids from
fixed held-out photos (:func:`sample_grid`) and checkpoints.

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
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan import distributed, io, losses, runs, vgg
from mgan import precision as prec
from mgan.config import to_dict
from mgan.data import CropSet, epoch_order
from mgan.discriminator import MGANDiscriminator
from mgan.errors import InputError, one_line
from mgan.generator import Generator
from mgan.training.config import ExperimentConfig, Paths
from mgan.training.stages import Clock, load_photo
from mgan.vgg import LAYER_INDEX, layer_scale

CHECKPOINT_FORMAT = "mgan-train-v1"
LATEST = "checkpoint-latest.pt"  # the resume checkpoint of a run folder, rewritten every checkpoint_every steps


class Trainer:
    """Trains G and D on paired crops (paper Sec. 3.2).

    Per step, on a batch of crops (``B x 3 x S x S``):

    - ``x = relu4_1(photo crop)`` ``[B, 512, S/8, S/8]`` (frozen VGG, cached when it fits)
    - ``y = G(x)`` ``[B, 3, S, S]`` in ``[-1, 1]``; ``phi(y) = relu3_1(y)`` ``[B, 256, S/4, S/4]``
    - D step: ``hinge(D(phi(target)), +1) + hinge(D(phi(y)), -1)`` over the masked score maps
    - G step: ``pixel_weight * MSE(y, target) + adv_weight * hinge(D(phi(y)), +1)
      [+ feature_weight * MSE(phi_f(y), phi_f(target))]
      [+ gram_weight * sum_l ||Gram(phi_l(y)) - Gram(phi_l(target))||^2 / ||Gram(phi_l(target))||^2]``

    With noise pairs (``cfg.noise``, ``noise`` the crops of stage 2b) a batch also holds
    ``noise.per_batch`` noise crops from step ``noise.start_step`` on, under the same losses.

    The data order of epoch ``e`` is :func:`mgan.data.epoch_order` ``(K, seed, e)``; the
    checkpoint holds G, D, both Adam states, the step and the RNG state, so a resumed run
    continues bit-exactly (fp32, same machine).

    Under ``torchrun`` (``dist.world = N``) a step takes ``N * batch`` crops of that order
    and rank ``r`` trains on the ``r``-th slice of ``batch``; G and D are wrapped in
    ``DistributedDataParallel`` with globally synchronised BatchNorm
    (:mod:`mgan.distributed`), so the update equals one process's with batch ``N * batch``.
    """

    def __init__(self, cfg: ExperimentConfig, crops: CropSet, device: torch.device | str = "cpu",
                 progress: bool = True, dist: distributed.Dist | None = None, noise: CropSet | None = None) -> None:
        t = cfg.train
        self.cfg, self.crops, self.device, self.progress = cfg, crops, torch.device(device), progress
        self.dist = dist or distributed.Dist()
        self.global_batch = t.batch * self.dist.world
        if crops.size != cfg.crops.size:
            raise InputError(f"crops are {crops.size}px but crops.size is {cfg.crops.size}")
        if len(crops) < self.global_batch:
            raise InputError(f"only {len(crops)} crops, fewer than one batch of {self.global_batch}; "
                                "use more or larger photos or a smaller train.batch")
        # noise pairs (cfg.noise): crop indices len(crops) .. len(crops) + len(noise) - 1 are theirs
        self.noise = noise if cfg.noise.count else None
        if cfg.noise.count and noise is None:
            raise InputError("noise.count is set but no noise crops were given (stage 2b)")
        if self.noise is not None:
            if self.noise.size != crops.size:
                raise InputError(f"noise crops are {self.noise.size}px, the photo crops {crops.size}px")
            if len(self.noise) < cfg.noise.per_batch * self.dist.world:
                raise InputError(f"only {len(self.noise)} noise crops, fewer than one batch of "
                                 f"{cfg.noise.per_batch * self.dist.world}; use more noise images or a smaller "
                                 "noise.per_batch")
        self.n_photo = len(crops)
        self.n_crops = self.n_photo + (len(self.noise) if self.noise is not None else 0)
        self.precision = prec.resolve(t.precision, self.device)  # "auto" -> "bf16" / "fp32"
        self.bf16 = self.precision == "bf16"
        self.fmt = torch.channels_last if t.channels_last else torch.contiguous_format
        torch.manual_seed(t.seed)  # G's and D's DCGAN init draw from the global RNG
        self.G = Generator(cfg.model).to(self.device, memory_format=self.fmt)
        self.D = MGANDiscriminator(vgg.channels(t.d_layer), tuple(t.d_hidden), t.d_ring).to(
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
        self.use_gram = t.gram_weight > 0
        wanted = (({t.d_layer} if self.use_d else set()) | ({t.feature_layer} if self.use_feat else set())
                  | (set(t.gram_layers) if self.use_gram else set()))
        self.fake_layers = sorted(wanted, key=LAYER_INDEX.get)
        self.real_layers = self.fake_layers
        taps = tuple(sorted({self.in_layer, t.d_layer, t.feature_layer, *self.fake_layers}, key=LAYER_INDEX.get))
        self.encoder = vgg.shared_encoder(taps, cfg.model.vgg_weights, cfg.model.pooling, self.precision,
                                      t.channels_last, str(self.device))
        betas = (t.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.d_lr, betas=betas)
        self.step = 0
        self.steps_per_epoch = len(crops) // self.global_batch  # the last partial batch of an epoch is dropped
        self.total_steps = t.max_steps if t.max_steps is not None else t.epochs * self.steps_per_epoch
        if t.average_start is not None and t.average_start > self.total_steps:  # epochs: known only now
            raise InputError(f"train.average_start {t.average_start} is past the run's last step {self.total_steps}: "
                             "no step would be averaged")
        # the running mean of G's state at the averaging steps (train.average_start), fp32
        self.G_avg: dict[str, Tensor] | None = None
        self.n_avg = 0
        self.cache_in: Tensor | None = None
        self.cache_real: dict[str, Tensor] = {}
        self._order: tuple[int, Tensor] | None = None
        self._noise_order: tuple[int, Tensor] | None = None

    # -- data

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _encode(self, x: Tensor, layers: list[str]) -> dict[str, Tensor]:
        return self.encoder(x.to(self.device).contiguous(memory_format=self.fmt), layers)

    def _noise_schedule(self) -> tuple[int, int, int]:
        """``(noise crops, noise crops per global step, first step with them)``; zeros without noise."""
        if self.noise is None:
            return (0, 0, 0)
        nz = self.cfg.noise
        return (len(self.noise), nz.per_batch * self.dist.world, nz.start_step)

    def crop_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Crops ``idx`` (photo crops, then noise crops from index ``n_photo``) as float
        ``([B, 3, S, S], [B, 3, S, S])`` in ``[0, 1]`` (G's input image, target), in ``idx``'s order."""
        if self.noise is None:
            return self.crops.batch(idx)
        is_noise = idx >= self.n_photo
        if not is_noise.any():
            return self.crops.batch(idx)
        s = self.crops.size
        photo, target = torch.empty(len(idx), 3, s, s), torch.empty(len(idx), 3, s, s)
        for mask, crops, offset in ((~is_noise, self.crops, 0), (is_noise, self.noise, self.n_photo)):
            if mask.any():
                photo[mask], target[mask] = crops.batch(idx[mask] - offset)
        return photo, target

    def cache_bytes(self) -> tuple[int, int]:
        """Bytes needed to cache G's input features and D's real features of all crops."""
        k, s = self.n_crops, self.crops.size
        itemsize = 2 if self.bf16 else 4
        per_in = vgg.channels(self.in_layer) * (s // layer_scale(self.in_layer)) ** 2
        per_real = sum(vgg.channels(n) * (s // layer_scale(n)) ** 2 for n in self.real_layers)
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

        clock = Clock()
        k = self.n_crops
        ins, reals = [], {n: [] for n in self.real_layers}
        for i in tqdm(range(0, k, chunk), desc="feature cache", disable=not self.progress, leave=False,
                      dynamic_ncols=True, file=sys.stderr):
            idx = torch.arange(i, min(k, i + chunk))
            photo, target = self.crop_batch(idx)
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
        ``step // steps_per_epoch``'s order is the global batch, and rank ``r`` takes its ``r``-th part.

        With noise pairs, from step ``noise.start_step`` on, ``noise.per_batch`` noise crop
        indices (``>= n_photo``) follow, walked the same way through their own epochs (which
        count from ``start_step``), so the photo crops of a step do not depend on the noise."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.n_photo, self.cfg.train.seed, epoch))
        b = self.cfg.train.batch
        start = pos * self.global_batch + self.dist.rank * b
        idx = self._order[1][start : start + b]
        nz = self.cfg.noise
        if self.noise is None or step < nz.start_step:
            return idx
        nb, world = nz.per_batch, self.dist.world
        epoch, pos = divmod(step - nz.start_step, len(self.noise) // (nb * world))
        if self._noise_order is None or self._noise_order[0] != epoch:
            self._noise_order = (epoch, epoch_order(len(self.noise), self.cfg.train.seed, epoch))
        start = pos * nb * world + self.dist.rank * nb
        return torch.cat([idx, self.n_photo + self._noise_order[1][start : start + nb]])

    # -- one step

    def train_step(self, idx: Tensor) -> dict[str, float]:
        """One D step and one G step on crops ``idx``; returns the losses and mean D scores
        (averaged over the ranks)."""
        t = self.cfg.train
        photo, target = self.crop_batch(idx)
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
        if self.use_gram:
            loss_gram = sum(losses.relative_gram_loss(fake[n], real[n]) for n in t.gram_layers)
            loss = loss + t.gram_weight * loss_gram
            out["loss_gram"] = loss_gram.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        out["loss_g"] = loss.item()
        return distributed.mean_over_ranks(out, self.dist, self.device)

    # -- weight averaging

    def average_due(self, step: int) -> bool:
        """Whether G's weights after ``step`` go into the average (``train.average_start``)."""
        start, every = self.cfg.train.average_start, self.cfg.train.average_every
        return start is not None and step >= start and ((step - start) % every == 0 or step == self.total_steps)

    @torch.no_grad()
    def update_average(self) -> None:
        """Fold G's current state into the running mean (floating tensors: BN's running
        statistics too; the batch counter is the last one's)."""
        self.n_avg += 1
        state = self.G.state_dict()
        if self.G_avg is None:
            self.G_avg = {k: v.detach().clone() for k, v in state.items()}
            return
        for k, v in state.items():
            if v.is_floating_point():
                self.G_avg[k] += (v - self.G_avg[k]) / self.n_avg
            else:
                self.G_avg[k].copy_(v)

    def release_generator(self) -> Generator:
        """G as the release takes it: a copy holding the weight average if there is one, else G."""
        G = copy.deepcopy(self.G)
        if self.G_avg is not None:
            G.load_state_dict(self.G_avg)
        return G

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
            "num_crops": self.n_photo,
            "num_noise_crops": self.n_crops - self.n_photo,
            "noise_schedule": list(self._noise_schedule()),
            "world_size": self.dist.world,
            "G": self.G.state_dict(),
            "G_avg": self.G_avg,
            "n_avg": self.n_avg,
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "config": to_dict(self.cfg),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; a checkpoint of other data or nets -> InputError."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"not an mgan training checkpoint (format {state.get('format')!r})")
        if state["num_crops"] != len(self.crops) or state["steps_per_epoch"] != self.steps_per_epoch:
            raise InputError(f"checkpoint was trained on {state['num_crops']} crops / {state['steps_per_epoch']} "
                                f"steps per epoch, this run has {len(self.crops)} / {self.steps_per_epoch} "
                                "(resume with the same crops and the same global batch, processes x train.batch)")
        # The noise crops' schedule must agree once either run has used them; a checkpoint of a
        # step before any noise (a photo-only run, or one before noise.start_step) can go on with it.
        step = int(state["step"])
        theirs = tuple(state.get("noise_schedule", (state.get("num_noise_crops", 0), 0, 0)))
        ours = self._noise_schedule()
        if theirs != ours and (theirs[0] and step > theirs[2] or ours[0] and step > ours[2]):
            raise InputError(f"checkpoint of step {step} was trained with {theirs[0]} noise crops, "
                             f"{theirs[1]} a step from step {theirs[2]}; this run has {ours[0]}, {ours[1]} from "
                             f"{ours[2]} (resume with the same noise options and processes x noise.per_batch)")
        start = self.cfg.train.average_start
        if start is not None and step >= start and not state.get("n_avg"):
            raise InputError(f"checkpoint of step {step} holds no weight average, but train.average_start is "
                             f"{start} (resume with the run's own config)")
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise InputError(f"checkpoint does not fit this model: {one_line(exc)[:200]}") from None
        avg = state.get("G_avg") if start is not None else None
        self.G_avg = {k: v.to(self.device) for k, v in avg.items()} if avg is not None else None
        self.n_avg = int(state.get("n_avg", 0)) if avg is not None else 0
        self.step = step
        torch.set_rng_state(state["rng"]["torch"])


# ----------------------------------------------------------------------------- samples


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
        photo = load_photo(p, cfg, cfg.sample_size)
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
    return io.make_grid(rows)


def _wandb(cfg: ExperimentConfig, run_dir: Path) -> runs.WandbLog:
    """The run's wandb logger (a no-op unless ``wandb.enabled``)."""
    w = cfg.wandb
    return runs.WandbLog(run_dir, to_dict(cfg), enabled=w.enabled, project=w.project, entity=w.entity, mode=w.mode)


def _log_line(step: int, total: int, row: dict) -> str:
    keys = ("loss_g", "loss_pix", "loss_adv", "loss_feat", "loss_gram", "loss_d", "d_real", "d_fake", "sec_per_step")
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
    metrics = runs.MetricsLog(run_dir, trainer.step) if main_rank else None
    wb = _wandb(trainer.cfg, run_dir) if main_rank else None
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
            if trainer.average_due(step):
                trainer.update_average()
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
