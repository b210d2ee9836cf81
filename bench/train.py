"""Benchmark MGAN training on this machine: seconds per training step and per-stage wall time.

Part 1 times :meth:`mgan.train.Trainer.train_step` (one D step + one G step, paper
Sec. 3.2) on 128x128 crops with the paper's networks, for each batch size x precision,
with the encoder features of the fixed crops cached (the default when they fit the
budget) and, as the baseline in the same run, encoded on the fly every step. Each
variant runs ``--warmup`` untimed steps (oneDNN primitive creation) and reports the
median of ``--steps`` timed steps.

Part 2 (``--quick``) runs the whole ``experiments/quick.yaml`` pipeline (MDAN, crops,
training, release) in a temporary folder with the precision ``auto`` picks on this CPU
(bf16 only where native) and prints its wall time, that precision, the CPU kind and each
stage's wall time; ``--stages RUN_DIR`` prints them for a run that already finished.
The header line gives the CPU kind and its conv ceiling (``bench/_common.py``).

    python bench/train.py                                   # step table, ~5-10 min on 2 cores
    python bench/train.py --batches 16 --precisions bf16 --steps 5
    python bench/train.py --quick                           # + the quick pipeline (<= 30 min)
    python bench/train.py --stages runs/00001-quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import torch

ROOT = Path(__file__).resolve().parent.parent


def time_steps(batch: int, precision: str, cache: bool, steps: int, warmup: int, crop: int) -> tuple[float, float]:
    """Median seconds per training step and the feature-cache build time for one variant."""
    from mgan.data import CropSet
    from mgan.train import ExperimentConfig, TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    k = batch * (steps + warmup)
    photo = torch.randint(0, 256, (k, 3, crop, crop), dtype=torch.uint8, generator=g)
    target = torch.randint(0, 256, (k, 3, crop, crop), dtype=torch.uint8, generator=g)
    crops = CropSet(photo, target, torch.zeros(k, 4, dtype=torch.int32), ["x"])
    cfg = ExperimentConfig(train=TrainConfig(batch=batch, precision=precision,
                                             feature_cache_mb=1 << 20 if cache else 0))
    trainer = Trainer(cfg, crops, "cpu", progress=False)
    t_cache = trainer.build_feature_cache().get("seconds", 0.0)
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        trainer.train_step(trainer.batch_indices(s))
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), t_cache


def print_stages(run_dir: Path) -> None:
    """Wall and CPU seconds of each stage, from the run folder's ``timings.json``."""
    data = json.loads((run_dir / "timings.json").read_text())
    names = {"mdan": "1 MDAN targets (warm-up + training photos)", "mdan_samples": "1b MDAN of the sample photos",
             "crops": "2 paired crops", "features": "3a feature cache", "train": "3b training",
             "release": "4 release + decode check", "total": "total"}
    threads = data.get("threads", 2)
    print(f"\nstage times of {run_dir.name} ({data.get('steps')} steps, {data.get('crops')} crops); "
          f"CPU = process CPU time over all threads, CPU/{threads} = the wall time the stage would take "
          "with the cores to itself\n")
    print(f"| stage | wall (s) | wall (min) | CPU (s) | CPU/{threads} (min) |\n|---|---:|---:|---:|---:|")
    for k, label in names.items():
        if f"{k}_s" in data:
            cpu = data.get(f"{k}_cpu_s")
            cpu_txt = f"{cpu:.0f} | {cpu / threads / 60:.1f}" if cpu else "- | -"
            print(f"| {label} | {data[f'{k}_s']:.0f} | {data[f'{k}_s'] / 60:.1f} | {cpu_txt} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="example: python bench/train.py --batches 16 64 --precisions fp32 bf16")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16", "auto"],
                   help="default: fp32 and bf16 where bf16 is native, else fp32 (emulated bf16 is 4-44x slower)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--no-baseline", action="store_true", help="skip the on-the-fly encoding variants")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="also run experiments/quick.yaml end to end and time its stages")
    p.add_argument("--stages", type=Path, help="only print the stage times of a finished run folder")
    p.add_argument("--no-steps", action="store_true", help="skip the per-step table (with --quick)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stages:
        print_stages(args.stages)
        return 0
    from mgan import precision

    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    _common.print_header()
    print(f"# {precision.describe('auto', 'cpu')}")
    native = precision.native_bf16("cpu")
    precisions = [precision.resolve(p, "cpu") for p in args.precisions or (["fp32", "bf16"] if native else ["fp32"])]
    if not args.no_steps:
        print(f"\nseconds per training step (D step + G step), {args.crop}x{args.crop} crops, paper-size G and D, "
              f"median of {args.steps}\n")
        print("| batch | precision | features | s/step | crops/s | cache build (s) |\n|---:|---|---|---:|---:|---:|")
        for batch in args.batches:
            for prec in dict.fromkeys(precisions):
                for cache in (True, False) if not args.no_baseline else (True,):
                    sec, t_cache = time_steps(batch, prec, cache, args.steps, args.warmup, args.crop)
                    label = "cached" if cache else "encoded each step"
                    build = f"{t_cache:.1f}" if cache else "-"
                    print(f"| {batch} | {prec} | {label} | {sec:.2f} | {batch / sec:.1f} | {build} |", flush=True)
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="mgan-bench-") as tmp:
            cmd = [sys.executable, "-m", "mgan.train", str(ROOT / "experiments" / "quick.yaml"), "--outdir", tmp,
                   "--no-progress", "--resume", "never"]
            t0 = time.perf_counter()
            rc = subprocess.run(cmd, check=False).returncode
            if rc:
                print(f"quick pipeline failed with exit status {rc}", file=sys.stderr)
                return 1
            wall = time.perf_counter() - t0
            run = next(Path(tmp).glob("0*-quick"))
            from mgan.config import load_yaml

            ran = load_yaml(run / "config.yaml")["train"]["precision"]  # "auto" resolved by the run
            print(f"\nquick pipeline wall time: {wall:.0f} s ({wall / 60:.1f} min), precision {ran} "
                  f"(auto on this CPU: {precision.cpu_kind()}, native bf16 {'yes' if native else 'no'}), "
                  f"{torch.get_num_threads()} threads")
            print_stages(run)
    print(f"\n# load average {os.getloadavg()[0]:.1f} at the end (other processes share these cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
