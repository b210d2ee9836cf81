"""MGAN training: a feed-forward generator G fitted to MDAN outputs (paper Sec. 3.2 and 5).

``python -m mgan.train experiments/picasso.yaml`` runs every stage that is not already
done; each one is resumable:

1. **MDAN targets** (Sec. 3.1): guided MDAN over the training photos, one D carried from
   image to image after a warm-up; also over the held-out sample photos
   (:mod:`mgan.training.stages`).
   With noise pairs (``noise.count > 0``, not in the paper) also over seeded Perlin images.
2. **Paired crops** (Sec. 3.2): crops of every photo and its MDAN output under the same
   rotation x scale x flip augmentation, cached as uint8 (:mod:`mgan.training.stages`).
3. **Training** G against an MGAN discriminator on relu3_1 of G's output, in an
   auto-numbered run folder with the resolved ``config.yaml``, ``metrics.jsonl``, sample
   grids and checkpoints (:mod:`mgan.training.trainer`, :mod:`mgan.runs`).
4. **Release**: G as a small ``safetensors`` file that :class:`mgan.decode.Decoder` loads,
   checked by decoding the sample photos (:mod:`mgan.training.release`).

Stages 1-2 are cached in ``<outdir>/cache/<key>/``, keyed by every input they depend on,
so reruns skip them. Rerunning the same command resumes the newest unfinished run folder
whose resolved config is the same, or reports it finished.

This module is the command line: :func:`_run` reads top-down as the stages above; the
engine is :mod:`mgan.training`, whose public names are re-exported here.

CLI::

    python -m mgan.train experiments/picasso.yaml
    python -m mgan.train experiments/quick.yaml --set train.batch=8 --dry-run
    python -m mgan.train --resume runs/00003-quick
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mgan import cli, distributed, io, runs
from mgan import precision as prec
from mgan.config import dump_yaml, load_yaml
from mgan.data import CropSet
from mgan.errors import InputError
from mgan.io import make_grid
from mgan.runs import next_run_dir
from mgan.training.config import (
    CropConfig,
    ExperimentConfig,
    Paths,
    TrainConfig,
    WandbConfig,
    find_matching_run,
    load_config,
    probe_inputs,
    resolve_data_root,
    resolve_paths,
    resolve_precision,
)
from mgan.training.release import RELEASE_NAME, fp16_safe, release
from mgan.training.stages import (
    TIMINGS,
    Clock,
    StageCache,
    cache_keys,
    check_disk_space,
    estimate_crops,
    estimate_disk_bytes,
    estimate_noise_crops,
    merged_timings,
    read_timings,
    stage_crops,
    stage_mdan,
    stage_noise,
    stage_noise_crops,
    stage_sample_mdan,
    write_timings,
)
from mgan.training.trainer import (
    CHECKPOINT_FORMAT,
    LATEST,
    NonFiniteLoss,
    Samples,
    Trainer,
    fit,
    load_samples,
    sample_grid,
)

__all__ = [  # the engine's names, importable from here as before the split into mgan.training
    "CHECKPOINT_FORMAT", "LATEST", "RELEASE_NAME", "CropConfig", "ExperimentConfig", "NonFiniteLoss", "Paths",
    "Samples", "StageCache", "TrainConfig", "Trainer", "WandbConfig", "cache_keys", "check_disk_space",
    "estimate_crops", "estimate_disk_bytes", "find_matching_run", "fit", "fp16_safe", "load_config", "load_samples",
    "main", "make_grid", "merged_timings", "next_run_dir", "release", "resolve_data_root", "resolve_paths",
    "resolve_precision", "sample_grid", "stage_crops", "stage_mdan", "stage_sample_mdan",
]


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


# ----------------------------------------------------------------------------- the stages of a command


@dataclass
class _Job:
    """What the command line resolved to, shared by the steps of :func:`_run`."""

    args: argparse.Namespace
    cfg: ExperimentConfig  # resolved: absolute data_root, precisions chosen for this machine
    paths: Paths
    device: torch.device
    d: distributed.Dist
    cache: StageCache
    progress: bool
    say: Callable[..., None]  # stderr on rank 0, silent on the others


@dataclass
class _Resume:
    """Which run folder the command continues (none: a new one), its checkpoint (none: a run
    killed before its first checkpoint, started afresh in the same folder) and whether that
    run is finished."""

    run_dir: Path | None = None
    checkpoint: Path | None = None
    finished: bool = False


def _run(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    cfg, config_path, resume = _read_config(args)
    job, asked = _setup(args, cfg, config_path)
    resume = _plan_resume(job, resume)
    if args.dry_run:
        return _print_plan(job, resume)
    if resume.finished:
        assert resume.run_dir is not None  # only a found run can be finished (_plan_resume)
        if job.d.main:
            print(f"already done: {resume.run_dir / RELEASE_NAME} (use --resume never for a new run)")
        return 0
    _prepare_outdir(job, resume)
    job.say(prec.describe(asked["train"], job.device))
    if asked["mdan"] != asked["train"]:
        job.say(f"MDAN stage {prec.describe(asked['mdan'], job.device)}")

    timings: dict[str, dict[str, float]] = {}
    _make_targets(job, timings)  # stage 1
    if args.stop_after == "mdan":
        job.say(f"MDAN targets in {job.cache.targets}" + (f" and {job.cache.noise}" if job.cache.noise else ""))
        return 0
    crops, noise = _make_crops(job, timings)  # stage 2
    if args.stop_after == "crops":
        return 0
    trainer, run_dir = _open_run(job, crops, noise, resume)  # stage 3
    samples = _prepare_training(job, trainer, run_dir, timings)
    clock = Clock()
    completed = fit(trainer, run_dir, samples, job.progress)
    timings["train"] = clock.read()
    if not job.d.main:
        return 0 if completed else 130
    if not completed:
        write_timings(run_dir, timings)
        job.say(f"stopped at step {trainer.step}; resume with: python -m mgan.train --resume {run_dir}")
        return 130
    if args.stop_after == "train":
        write_timings(run_dir, timings)
        return 0
    return _release(job, trainer, run_dir, samples, timings)  # stage 4


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def _resume_target(arg: str) -> tuple[Path, Path]:
    """``PATH`` (run folder or checkpoint file) -> ``(run folder, checkpoint)``."""
    path = Path(arg)
    run_dir, ckpt = (path, path / LATEST) if path.is_dir() else (path.parent, path)
    if not ckpt.is_file():
        raise InputError(f"--resume {arg}: no checkpoint at {ckpt}")
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"--resume {arg}: {run_dir} has no config.yaml")
    return run_dir, ckpt


def _read_config(args: argparse.Namespace) -> tuple[ExperimentConfig, Path, _Resume]:
    """The experiment's config (from the YAML file, or from the run folder of ``--resume PATH``),
    the file it came from, and the run to resume if ``--resume PATH`` named one."""
    if args.resume not in ("auto", "never"):
        run_dir, ckpt = _resume_target(args.resume)
        base = load_yaml(run_dir / "config.yaml")
        if args.config is not None:
            raise InputError("give either a config file or --resume PATH, not both (the run keeps its config)")
        return load_config(None, args.overrides, base=base), run_dir / "config.yaml", _Resume(run_dir, ckpt)
    if args.config is None:
        raise InputError("a config file is required, e.g. python -m mgan.train experiments/quick.yaml")
    return load_config(args.config, args.overrides), args.config, _Resume()


def _setup(args: argparse.Namespace, cfg: ExperimentConfig, config_path: Path) -> tuple[_Job, dict[str, str]]:
    """Find and check the inputs, join the torchrun job if any, resolve the precisions, locate
    the stage cache. Also returns the precisions as configured (said once the work starts)."""
    resuming = args.resume not in ("auto", "never")
    data_root = resolve_data_root(cfg, None if resuming else config_path, args.data_root)
    cfg = dataclasses.replace(cfg, data_root=str(data_root))  # the run's config.yaml is self-contained
    paths = resolve_paths(cfg, data_root)
    # every photo opens and is large enough (headers only), before anything else happens,
    # also for --dry-run, which reads their sizes for its crop estimate
    probe_inputs(cfg, paths)
    if cfg.wandb.enabled:  # a missing [wandb] extra is reported now, not hours later in the training stage
        from mgan.extras import require  # noqa: PLC0415

        require("wandb", "wandb logging (wandb.enabled)")
    d, device = distributed.init(cli.resolve_device(args.device), args.dist_timeout)
    say = functools.partial(print, file=sys.stderr) if d.main else (lambda *a, **k: None)  # noqa: ARG005
    asked = {"train": cfg.train.precision, "mdan": cfg.mdan.precision}
    cfg = resolve_precision(cfg, device)
    n, n_crops = cfg.noise, estimate_noise_crops(cfg)
    if n.count and n_crops < n.per_batch * d.world:  # before hours of MDAN, not after
        raise InputError(f"noise pairs: {n.count} images of {n.size} px make {n_crops} crops, "
                         f"fewer than one batch of {n.per_batch * d.world}; raise noise.count or lower noise.per_batch")
    cache = StageCache.at(args.outdir, cache_keys(cfg, paths))
    return _Job(args, cfg, paths, device, d, cache, not args.no_progress and d.main, say), asked


def _plan_resume(job: _Job, resume: _Resume) -> _Resume:
    """Rank 0 decides which run folder to continue (``--resume auto``: the newest one with the
    same resolved config that has a checkpoint) and whether it is finished; all ranks follow it."""
    plan = None
    if job.d.main:
        run_dir, ckpt = resume.run_dir, resume.checkpoint
        if run_dir is None and job.args.resume == "auto":
            run_dir = find_matching_run(job.args.outdir, job.cfg)
            # a run killed before its first checkpoint keeps its folder: it starts afresh there
            # rather than leaving a folder with nothing but config.yaml behind
            ckpt = run_dir / LATEST if run_dir is not None and (run_dir / LATEST).is_file() else None
            if run_dir is not None and ckpt is None and (run_dir / RELEASE_NAME).is_file():
                run_dir = None  # released, then its checkpoint deleted: never overwrite that release
        finished = False
        if run_dir is not None and (run_dir / RELEASE_NAME).is_file() and ckpt is not None:
            state = io.load_checkpoint(ckpt)
            finished = state.get("step") == state.get("total_steps") and job.args.resume == "auto"
        plan = _Resume(run_dir, ckpt, finished)
    return distributed.broadcast(plan, job.d)


def _print_plan(job: _Job, resume: _Resume) -> int:
    """``--dry-run``: the resolved config and what each stage would do; writes nothing."""
    if not job.d.main:
        return 0
    cfg, paths, cache = job.cfg, job.paths, job.cache
    done = cache.done(cfg, paths)
    print(dump_yaml(cfg), end="")
    print(f"# data: {paths.data_root}\n#   style {paths.style.name}, {len(paths.warmup)} warm-up, "
          f"{len(paths.train)} training and {len(paths.samples)} sample photos")
    n = estimate_crops(cfg, paths)
    steps = cfg.train.max_steps or cfg.train.epochs * (n // cfg.train.batch)
    print(f"# stage 1 MDAN targets: {'cached' if done['mdan'] else 'to do'} in {cache.targets}")
    if paths.samples and cfg.sample_mdan:
        print(f"# stage 1b MDAN of samples: {'cached' if done['samples'] else 'to do'}")
    if cache.noise is not None:
        print(f"# stage 1c MDAN of {cfg.noise.count} Perlin images ({cfg.noise.size} px, scale {cfg.noise.scale:g} px): "
              f"{'cached' if done['noise'] else 'to do'} in {cache.noise}")
    print(f"# stage 2 crops: ~{n} crops, {'cached' if done['crops'] else 'to do'} in {cache.crops}")
    if cache.noise_crops is not None:
        print(f"# stage 2b noise crops: ~{estimate_noise_crops(cfg)} crops, {cfg.noise.per_batch} per step from "
              f"step {cfg.noise.start_step}, {'cached' if done['noise_crops'] else 'to do'} in {cache.noise_crops}")
    if resume.checkpoint is not None:
        where = f"resume {resume.run_dir}"
    elif resume.run_dir is not None:
        where = f"start afresh in {resume.run_dir}, which has no checkpoint yet"
    else:
        where = f"new run folder in {job.args.outdir}/"
    noise = f" (+ {cfg.noise.per_batch} noise crops from step {cfg.noise.start_step})" if cfg.noise.count else ""
    print(f"# stage 3 training: {steps} steps of {cfg.train.batch} crops{noise} ({where})")
    return 0


def _prepare_outdir(job: _Job, resume: _Resume) -> None:
    """Before any work (rank 0): the output folder is writable and has room for the stages
    still to run; temp files a killed run left in the cache and run folder go."""
    if job.d.main:
        outdir = job.args.outdir
        io.check_writable(outdir)
        done = job.cache.done(job.cfg, job.paths)
        check_disk_space(outdir, estimate_disk_bytes(job.cfg, job.paths, estimate_crops(job.cfg, job.paths), done))
        for folder in (job.cache.folder, resume.run_dir):  # noise-*/inputs/ lies below the cache folder too
            if folder is not None:  # both mgan's own: its subfolders (targets/, samples/) too
                io.remove_stale_temps(folder, recursive=True)
    distributed.barrier(job.d)


def _make_targets(job: _Job, timings: dict[str, dict[str, float]]) -> None:
    """Stage 1 (1b, 1c): MDAN outputs of the training photos, the sample photos and the noise images."""
    cfg, cache = job.cfg, job.cache
    timings["mdan"] = stage_mdan(cfg, job.paths, cache.targets, job.device, job.progress, job.d)
    if cfg.sample_mdan:
        timings["mdan_samples"] = stage_sample_mdan(cfg, job.paths, cache.targets, cache.samples, job.device,
                                                    job.progress, job.d)
    if cache.noise is not None:
        timings["mdan_noise"] = stage_noise(cfg, job.paths, cache.targets, cache.noise, job.device, job.progress,
                                            job.d)


def _make_crops(job: _Job, timings: dict[str, dict[str, float]]) -> tuple[CropSet, CropSet | None]:
    """Stage 2 (and 2b): the paired crops of the photos (and of the noise images, if any); rank 0
    builds them (if not cached), the others then load them."""
    cache = job.cache
    if not job.d.main:
        distributed.barrier(job.d)
    crops, timings["crops"] = stage_crops(job.cfg, job.paths, cache.targets, cache.crops)
    noise = None
    if cache.noise is not None and cache.noise_crops is not None:
        noise, timings["noise_crops"] = stage_noise_crops(job.cfg, cache.noise, cache.noise_crops)
    if job.d.main:
        distributed.barrier(job.d)
    job.say(f"{len(crops)} paired crops of {len(crops.files)} photos ({cache.crops})")
    if noise is not None:
        job.say(f"{len(noise)} paired crops of {len(noise.files)} noise images ({cache.noise_crops})")
    return crops, noise


def _open_run(job: _Job, crops: CropSet, noise: CropSet | None, resume: _Resume) -> tuple[Trainer, Path]:
    """A trainer on ``crops`` (and ``noise``), restored from the resumed run's checkpoint, or in a
    new run folder; the run folder's ``config.yaml`` is (re)written with the resolved config."""
    trainer = Trainer(job.cfg, crops, job.device, job.progress, job.d, noise=noise)
    if resume.run_dir is not None:
        run_dir = resume.run_dir
        if resume.checkpoint is not None:
            trainer.load_state_dict(io.load_checkpoint(resume.checkpoint))
            job.say(f"resuming {run_dir} at step {trainer.step}/{trainer.total_steps}")
        else:
            job.say(f"starting afresh in {run_dir} (stopped before its first checkpoint)")
            if job.d.main:  # the discarded attempt's training time is not this run's
                (run_dir / TIMINGS).unlink(missing_ok=True)
    else:
        run_dir = distributed.broadcast(runs.next_run_dir(job.args.outdir, job.cfg.name) if job.d.main else None,
                                        job.d)
    if job.d.main:
        runs.write_config(run_dir, dump_yaml(job.cfg))
    return trainer, run_dir


def _prepare_training(job: _Job, trainer: Trainer, run_dir: Path,
                      timings: dict[str, dict[str, float]]) -> Samples | None:
    """Encode the crops once if they fit the feature cache; load the sample photos (rank 0)."""
    timings["features"] = trainer.build_feature_cache()
    if not job.d.main:
        return None
    return load_samples(trainer, job.cfg, job.paths, job.cache.samples if job.cfg.sample_mdan else None)


def _release(job: _Job, trainer: Trainer, run_dir: Path, samples: Samples | None,
             timings: dict[str, dict[str, float]]) -> int:
    """Stage 4 (rank 0): the released generator, and the run's ``timings.json``."""
    so_far = merged_timings(read_timings(run_dir), timings)
    clock = Clock()
    path = release(trainer, run_dir, job.paths, samples, job.device, wall_time_s=so_far["total_s"])
    timings["release"] = clock.read()
    write_timings(run_dir, timings, {"steps": trainer.step, "crops": len(trainer.crops), "ranks": job.d.world})
    print(f"released {path} ({path.stat().st_size / 2**20:.1f} MB) after {trainer.step} steps; "
          f"decode with: python -m mgan.decode --model {path} --input PHOTO --out out.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
