"""Stage 4, the release: G as a small ``safetensors`` file that :class:`mgan.decode.Decoder` loads.

The release is G alone in fp16 (:func:`mgan.generator.save_release`), its BatchNorm in
eval mode (running statistics, see :mod:`mgan.training.trainer`), with the experiment
config, the painting's RGB mean and covariance (the decoder's default post-process matches
its outputs to them) and a model card in the metadata; :func:`release` checks it by decoding the
held-out sample photos with it into ``run_dir/decoded/``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from mgan import colour, io
from mgan.config import to_dict
from mgan.generator import Generator, ResidualBlock, save_release
from mgan.training.config import Paths
from mgan.training.trainer import Samples, Trainer

RELEASE_NAME = "generator.safetensors"  # in the run folder; its presence marks a finished run


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
    for seq in (G.net, *(m.branch for m in G.net if isinstance(m, ResidualBlock))):  # the blocks' too
        _fp16_safe_layers(list(seq))
    return G


def _fp16_safe_layers(mods: list[torch.nn.Module]) -> None:
    """Scale each conv in ``mods`` followed by a BN of too large a variance (see :func:`fp16_safe`), in place."""
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
    # the painting's colours go in too, for the decoder's default "match" post-process (docs/decoding.md)
    # G's weight average where train.average_start asks for one (n_avg steps averaged), else G as it is
    G = fp16_safe(trainer.release_generator())
    path = save_release(G, run_dir / RELEASE_NAME, card=card, extra=zoo.scrub_paths({
        "style": paths.style.name, "steps": trainer.step, "averaged_steps": trainer.n_avg,
        "photos": len(paths.train), "crops": len(trainer.crops), "noise_crops": trainer.n_crops - trainer.n_photo,
        "run": run_dir.name, "bn": "eval (running statistics)", "experiment": experiment,
        colour.STYLE_COLOUR_KEY: colour.moments_to_json(*zoo.painting_moments(paths.style))}))
    if samples is not None and samples.photos:
        dec = Decoder(path, device=device, precision="bf16" if trainer.bf16 else "fp32")
        for name, photo in zip(samples.names, samples.photos, strict=True):
            io.save_image(dec.decode(photo), run_dir / "decoded" / f"{name}.png")
    return path
