"""Memory under load (issue #6): a 500-image folder decode and a long MDAN batch keep RSS flat.

Makes ``--images`` small photos (random crops of ``shared/data/content`` and
``content_extra``, every 25th one grayscale; synthetic images where that folder is
absent) with random sides in ``--min-side..--max-side`` px, so the folder holds many
shapes and every shape-keyed cache is exercised. Then, each in a fresh subprocess that
runs the CLI's own ``main`` with 1 thread:

* ``python -m mgan.decode --input DIR --out OUT`` over all of them, in one run;
* ``python -m mgan.mdan --content-dir DIR --out OUT --size 64 --iterations 3`` over the
  first ``--mdan-images`` (one D carried from image to image, checkpointed after each).

While a run goes, its RSS (``VmRSS`` and ``RssAnon`` from ``/proc/PID/status``; no
psutil needed) and the number of finished outputs are sampled every ``--interval`` s.
The baseline, measured in the same run, is the RSS when the first output exists (model
loaded, first image done); growth is relative to it. Per run the table gives RSS after
2 / 10 / 20 / 50 / 100 % of the images with the number of distinct input shapes met so
far, the peak, and the growth per 100 images over the second half: a least-squares
slope over every sample taken there, so no single sample decides. "flat" means that
slope is below ``--threshold`` MB per 100 images on both VmRSS and RssAnon. Samples
after the last output are interpreter teardown (it maps ~100 MB of library pages) and
are left out.

What to expect on CPU: PyTorch keeps two LRU caches of oneDNN primitives keyed by
input shape, ideep's (``LRU_CACHE_CAPACITY``, 1024 entries) and oneDNN's own
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, 1024); a decode makes 13 conv primitives per
shape. Memory grows with each new shape until they fill, and once shapes outnumber
them (about 75 shapes: try ``--max-side 256``) the churn keeps fragmenting the heap
and RSS keeps growing. ``--env KEY=VALUE`` passes variables to both runs to try fixes,
e.g. ``--env ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 --env LRU_CACHE_CAPACITY=1`` (0 crashes).
MDAN needs ~45 images before its shapes and heap settle, hence 150 by default.

Usage::

    python bench/memory.py                        # 500 decodes + 150 MDAN images, ~1.5-3 min on 2 cores
    python bench/memory.py --images 100 --skip-mdan
    python bench/memory.py --skip-mdan --max-side 256   # ~300 shapes: more than the caches hold
    python bench/memory.py --keep /tmp/mem        # keep inputs, outputs, logs and samples.csv
    python bench/memory.py --decode-args "--noise-weight 0.3"   # also the noise blend of the folder loop
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
PHOTO_DIRS = ("content", "content_extra")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")
# The CLI's own main() after pinning torch's threads (OMP_NUM_THREADS, also set, pins them too).
LAUNCH = "import sys, torch; torch.set_num_threads({threads}); from mgan.{cli} import main; raise SystemExit(main(sys.argv[1:]))"


# ----------------------------------------------------------------------------- inputs


def make_images(folder: Path, n: int, min_side: int, max_side: int, seed: int,
                shapes_k: int = 0) -> tuple[list[tuple[int, int]], str]:
    """Write ``n`` JPEGs ``img_0000.jpg ...`` of random ``w x h`` in ``[min_side, max_side]``.

    ``shapes_k > 0`` draws every size from ``shapes_k`` random ``(w, h)`` pairs instead.
    Returns the ``(w, h)`` of each file, in file order, and where the pixels came from.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = sorted(p for d in PHOTO_DIRS if (DATA / d).is_dir() for p in (DATA / d).iterdir()
                     if p.suffix.lower() in PHOTO_EXTENSIONS)
    folder.mkdir(parents=True, exist_ok=True)
    pool = [tuple(int(v) for v in rng.integers(min_side, max_side + 1, size=2)) for _ in range(shapes_k)]
    sizes = []
    photos: dict[Path, Image.Image] = {}
    for i in range(n):
        if pool:
            w, h = pool[int(rng.integers(len(pool)))]
        else:
            w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
        sizes.append((w, h))
        if sources:
            src = sources[i % len(sources)]
            if src not in photos:
                with Image.open(src) as im:
                    photos[src] = im.convert("RGB")
            im = photos[src]
            # A random crop of aspect w:h, 50-100 % of the largest that fits, resized to w x h.
            fit = min(im.width / w, im.height / h) * rng.uniform(0.5, 1.0)
            cw, ch = max(1, int(w * fit)), max(1, int(h * fit))
            x0, y0 = int(rng.integers(0, im.width - cw + 1)), int(rng.integers(0, im.height - ch + 1))
            img = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.LANCZOS)
        else:  # smooth colour noise: a few random cells upsampled
            cells = rng.integers(0, 256, size=(int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3), dtype=np.uint8)
            img = Image.fromarray(cells, "RGB").resize((w, h), Image.Resampling.BICUBIC)
        if i % 25 == 24:  # the CLIs convert grayscale to RGB (with a note): that path runs too
            img = img.convert("L")
        img.save(folder / f"img_{i:04d}.jpg", quality=90)
    return sizes, (f"crops of {len(sources)} photos in {DATA}" if sources else "synthetic (no shared data)")


def decode_shape(w: int, h: int) -> tuple[int, int]:
    """The shape the decoder runs at (``Decoder.decode``): the border margin on every side
    (``MARGIN`` px, cut to the largest multiple of 8 below the shorter side), then sides padded
    up to multiples of 8."""
    from mgan.decode import MARGIN, fit_margin  # noqa: PLC0415

    m = fit_margin(MARGIN, h, w)
    return -(-(w + 2 * m) // 8) * 8, -(-(h + 2 * m) // 8) * 8


def mdan_shape(w: int, h: int, size: int) -> tuple[int, int]:
    """The shape MDAN runs at: longest side ``size``, sides floored to multiples of 8 (``io.load_image``)."""
    s = size / max(w, h)
    return max(1, round(w * s)) // 8 * 8, max(1, round(h * s)) // 8 * 8


# ----------------------------------------------------------------------------- sampling


@dataclass
class Run:
    """One monitored subprocess: samples ``(seconds, outputs done, VmRSS MB, RssAnon MB)``."""

    name: str
    module: str
    command: list[str]
    shapes: list[tuple[int, int]]  # the shape each input runs at, in processing order
    log: Path
    samples: list[tuple[float, int, float, float]] = field(default_factory=list)
    peak_mb: float = 0.0
    wall_s: float = 0.0
    returncode: int = 0

    @property
    def images(self) -> int:
        return len(self.shapes)


def _status_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, RssAnon) of ``pid`` in MB, None once it is gone."""
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:")):
                    key, kb = line.split()[:2]
                    vals[key] = int(kb) / 1024
    except OSError:
        return None
    if "VmRSS:" not in vals:  # a zombie has no memory lines
        return None
    return vals["VmRSS:"], vals.get("RssAnon:", vals["VmRSS:"])


def _count_outputs(folder: Path) -> int:
    """Finished ``*.png`` outputs (atomic writes: temp files start with a dot and are not counted)."""
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.endswith(".png") and not e.name.startswith("."))
    except OSError:
        return 0


def monitor(run: Run, out_dir: Path, interval: float, timeout: float, env: dict[str, str], root: Path) -> Run:
    """Start ``run.command`` in ``root``, sample it until it exits, take its peak RSS from ``wait4``."""
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    with open(run.log, "w") as logf:  # tqdm goes to a file: an unread pipe would block the child
        proc = subprocess.Popen(run.command, cwd=root, env=env, stdout=logf, stderr=subprocess.STDOUT)
        while True:
            mem = _status_mb(proc.pid)
            now = time.perf_counter() - t0
            if mem is not None:
                run.samples.append((now, _count_outputs(out_dir), *mem))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if now > timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(interval)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    run.wall_s = time.perf_counter() - t0
    run.returncode = proc.returncode
    run.peak_mb = usage.ru_maxrss / 1024
    final = _count_outputs(out_dir)
    if run.samples and final > run.samples[-1][1]:  # the last image finished after the last sample
        run.samples.append((run.wall_s, final, run.samples[-1][2], run.samples[-1][3]))
    with open(run.log.with_suffix(".samples.csv"), "w") as f:
        f.write("seconds,done,vmrss_mb,rssanon_mb\n")
        f.writelines(f"{t:.3f},{c},{r:.1f},{a:.1f}\n" for t, c, r, a in run.samples)
    return run


# ----------------------------------------------------------------------------- analysis


def working(run: Run) -> list[tuple[float, int, float, float]]:
    """Samples up to the first one after the last output; later ones are interpreter teardown."""
    if not run.samples:
        return []
    done = run.samples[-1][1]
    first = next(i for i, s in enumerate(run.samples) if s[1] == done)
    return run.samples[: first + 1]


def at_count(run: Run, n: int) -> tuple[float, float, float] | None:
    """(seconds, VmRSS, RssAnon) of the first sample with at least ``n`` outputs done."""
    for t, c, rss, anon in working(run):
        if c >= n:
            return t, rss, anon
    return None


def slope_per_100(run: Run, lo: int, hi: int, col: int) -> float | None:
    """Least-squares MB per 100 outputs of column ``col`` (2 VmRSS, 3 RssAnon) over samples with lo <= done <= hi."""
    pts = [(s[1], s[col]) for s in working(run) if lo <= s[1] <= hi]
    if len(pts) < 3 or len({c for c, _ in pts}) < 2:
        return None
    mx = sum(c for c, _ in pts) / len(pts)
    my = sum(v for _, v in pts) / len(pts)
    sxx = sum((c - mx) ** 2 for c, _ in pts)
    return 100 * sum((c - mx) * (v - my) for c, v in pts) / sxx


def milestones(n: int) -> list[int]:
    """2, 10, 20, 50 and 100 % of ``n`` (10 / 50 / 100 / 250 / 500 for 500 images)."""
    return sorted({max(1, round(n * f)) for f in (0.02, 0.1, 0.2, 0.5, 1.0)})


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def table(run: Run, threshold: float) -> tuple[list[str], dict]:
    """Markdown lines of one run's table, and its summary."""
    base = at_count(run, 1)
    done = run.samples[-1][1] if run.samples else 0
    lines = [f"### {run.name}: {done}/{run.images} outputs, wall {run.wall_s:.0f} s, exit {run.returncode}", "",
             "| images done | shapes so far | elapsed s | VmRSS MB | vs baseline MB | RssAnon MB | vs baseline MB |",
             "|---|---|---|---|---|---|---|"]
    summary = {"name": run.name, "done": done, "wall": run.wall_s}
    if base is None:
        lines.append("| (no output was written) | | | | | | |")
        return lines, summary
    lines.append(f"| 1 = baseline (model loaded, first image done) | 1 | {base[0]:.1f} | {base[1]:.0f} | 0 "
                 f"| {base[2]:.0f} | 0 |")
    for m in (m for m in milestones(run.images) if m > 1):
        r = at_count(run, m)
        if r is None:
            lines.append(f"| {m} | | not reached | | | | |")
            continue
        lines.append(f"| {m} | {len(set(run.shapes[:m]))} | {r[0]:.1f} | {r[1]:.0f} | {r[1] - base[1]:+.1f} "
                     f"| {r[2]:.0f} | {r[2] - base[2]:+.1f} |")
    w = working(run)
    max_rss, max_anon = max(s[2] for s in w), max(s[3] for s in w)
    lines.append(f"| peak while working (sampled) | | | {max_rss:.0f} | {max_rss - base[1]:+.1f} | {max_anon:.0f} "
                 f"| {max_anon - base[2]:+.1f} |")
    lines.append(f"| peak incl. start-up and exit (ru_maxrss) | | | {run.peak_mb:.0f} | | | |")
    half = max(1, done // 2)
    g_rss, g_anon = slope_per_100(run, half, done, 2), slope_per_100(run, half, done, 3)
    lines.append(f"| growth per 100 images, images {half}-{done} (first half: {_fmt(slope_per_100(run, 1, half, 2))}) "
                 f"| | | {_fmt(g_rss)} | | {_fmt(g_anon)} | |")
    verdict = "-"
    if g_rss is not None and g_anon is not None:
        verdict = "flat" if max(abs(g_rss), abs(g_anon)) < threshold else "GROWS"
    lines += ["", f"verdict: **{verdict}** (threshold {threshold:g} MB per 100 images on VmRSS and RssAnon; "
              f"{len(w)} samples while working)"]
    summary.update(base=base[1], final=w[-1][2], peak=max_rss, maxrss=run.peak_mb, growth=g_rss, growth_anon=g_anon,
                   verdict=verdict, shapes=len(set(run.shapes[:done])))
    return lines, summary


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/memory.py",
        description="RSS over a 500-image folder decode and a long MDAN batch, each in one process (issue #6).",
        epilog="example: python bench/memory.py --images 100 --mdan-images 60",
    )
    p.add_argument("--images", type=int, default=500, help="images in the decoded folder")
    p.add_argument("--mdan-images", type=int, default=150, help="photos in the MDAN batch (the first of the folder)")
    p.add_argument("--skip-mdan", action="store_true", help="only the folder decode")
    p.add_argument("--skip-decode", action="store_true", help="only the MDAN batch")
    p.add_argument("--keep", type=Path, help="work in this new folder and keep inputs, outputs, logs and samples")
    p.add_argument("--min-side", type=int, default=96, help="smallest side of a generated image, px")
    p.add_argument("--max-side", type=int, default=160, help="largest side of a generated image, px")
    p.add_argument("--shapes", type=int, default=0,
                   help="draw sizes from this many random (w, h) pairs (default 0: each image its own random size)")
    p.add_argument("--model", type=Path, default=ROOT / "mgan" / "assets" / "picasso.safetensors", help="generator to decode with")
    p.add_argument("--decode-args", default="", help="extra arguments for mgan.decode, e.g. '--noise-weight 0.3'")
    p.add_argument("--mdan-args", default="--size 64 --style-size 128 --iterations 3",
                   help="arguments for mgan.mdan besides --content-dir, --out and --device")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for both runs, e.g. ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 (repeatable)")
    p.add_argument("--device", default="cpu", help="device of both runs")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of the runs")
    p.add_argument("--root", type=Path, default=ROOT,
                   help="source tree whose mgan package the runs import (default: this checkout)")
    p.add_argument("--interval", type=float, default=0.02, help="seconds between RSS samples")
    p.add_argument("--threshold", type=float, default=5.0, help="MB per 100 images below which memory is flat")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated images")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 ok (flat or not: the tables say), 2 bad options, 1 a run failed."""
    args = _parser().parse_args(argv)
    if (args.images < 2 or args.mdan_images < 2 or not 8 <= args.min_side <= args.max_side or args.interval <= 0
            or args.shapes < 0 or args.threads < 1 or any("=" not in kv for kv in args.env)):
        print("error: need --images and --mdan-images >= 2, 8 <= --min-side <= --max-side, --interval > 0, "
              "--shapes >= 0, --threads >= 1, --env KEY=VALUE", file=sys.stderr)
        return 2
    if not args.model.is_file():
        print(f"error: generator not found: {args.model}", file=sys.stderr)
        return 2
    if args.keep is not None and args.keep.exists() and (not args.keep.is_dir() or any(args.keep.iterdir())):
        print(f"error: --keep {args.keep} must be a new or empty folder", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="mgan-memory-"))
    try:
        return _bench(args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _subset(src: Path, dst: Path, n: int) -> Path:
    """Hard-link the first ``n`` files of ``src`` into ``dst`` (a folder of exactly ``n`` inputs)."""
    dst.mkdir(parents=True)
    for p in sorted(src.iterdir())[:n]:
        os.link(p, dst / p.name)
    return dst


def _bench(args: argparse.Namespace, work: Path) -> int:
    import _common
    import torch

    load0 = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"torch {torch.__version__}; {args.threads} thread(s) per run; load average at start "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    torch.set_num_threads(args.threads)  # the ceiling at the runs' thread count
    _common.print_header()
    t0 = time.perf_counter()
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           **dict(kv.split("=", 1) for kv in args.env)}
    n_in = max(0 if args.skip_decode else args.images, 0 if args.skip_mdan else args.mdan_images)
    sizes, source = make_images(work / "in", n_in, args.min_side, args.max_side, args.seed, args.shapes)
    print(f"# inputs: {n_in} JPEGs {args.min_side}-{args.max_side} px ({source}), made in "
          f"{time.perf_counter() - t0:.1f} s" + (f"; env {' '.join(args.env)}" if args.env else ""))
    runs: list[Run] = []
    if not args.skip_decode:
        folder = work / "in" if args.images == n_in else _subset(work / "in", work / "in_decode", args.images)
        out = work / "decode_out"
        cli = ["--input", str(folder), "--out", str(out), "--model", str(args.model), "--device", args.device,
               *shlex.split(args.decode_args)]
        run = Run("folder decode", "mgan.decode", _launch("decode", cli, args.threads),
                  [decode_shape(w, h) for w, h in sizes[: args.images]], work / "decode.log")
        runs.append(monitor(run, out, args.interval, args.timeout, env, args.root))
    if not args.skip_mdan:
        folder = _subset(work / "in", work / "in_mdan", args.mdan_images)
        out = work / "mdan_out"
        mdan_args = shlex.split(args.mdan_args)
        size = argparse.ArgumentParser(add_help=False)
        size.add_argument("--size", type=int, default=384)
        side = size.parse_known_args(mdan_args)[0].size
        cli = ["--content-dir", str(folder), "--out", str(out), "--device", args.device, *mdan_args]
        run = Run("MDAN batch", "mgan.mdan", _launch("mdan", cli, args.threads),
                  [mdan_shape(w, h, side) for w, h in sizes[: args.mdan_images]], work / "mdan.log")
        runs.append(monitor(run, out, args.interval, args.timeout, env, args.root))
    failed = False
    summaries = []
    for run in runs:
        extra = " ".join(f"{k}={v}" for k, v in env.items() if k not in ("MKL_NUM_THREADS",))
        print(f"\n# command (same as): {extra} python -m {run.module} {shlex.join(run.command[3:])}")
        lines, summary = table(run, args.threshold)
        print("\n".join(lines))
        summaries.append(summary)
        if run.returncode != 0:
            failed = True
            log = run.log.read_text(errors="replace").strip().splitlines()
            print(f"error: {run.name} failed with exit {run.returncode}: {log[-1] if log else ''}", file=sys.stderr)
    if summaries:
        print("\n| run | images | shapes | wall s | baseline MB | final MB | peak MB (ru_maxrss) "
              "| growth MB/100 images, 2nd half (VmRSS / RssAnon) | verdict |")
        print("|---|---|---|---|---|---|---|---|---|")
        for s in summaries:
            if "base" not in s:
                print(f"| {s['name']} | {s['done']} | - | {s['wall']:.0f} | - | - | - | - | - |")
                continue
            print(f"| {s['name']} | {s['done']} | {s['shapes']} | {s['wall']:.0f} | {s['base']:.0f} | {s['final']:.0f} "
                  f"| {s['peak']:.0f} ({s['maxrss']:.0f}) | {_fmt(s['growth'])} / {_fmt(s['growth_anon'])} "
                  f"| {s['verdict']} |")
    load1 = os.getloadavg()
    print(f"# total {time.perf_counter() - t0:.0f} s; load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
          + (f"; kept in {work}" if args.keep else ""))
    return 1 if failed else 0


def _launch(cli: str, argv: list[str], threads: int) -> list[str]:
    return [sys.executable, "-c", LAUNCH.format(threads=threads, cli=cli), *argv]


if __name__ == "__main__":
    raise SystemExit(main())
