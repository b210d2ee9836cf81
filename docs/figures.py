"""Regenerate the README's comparison figures from outputs on disk and a training run.

Two kinds, both labelled grids with one row per photo:

* ``columns``: the photo, then one column per folder of outputs named ``<photo stem>.<ext>``
  (as ``mgan.evaluate`` writes them): e.g. photo | MDAN | MGAN | Gatys, or the paper's
  Fig. 10 kind, photo | MDAN with a fresh D | MDAN with a D carried over 100 photos.
* ``progression``: the paper's Fig. 6 kind, G of one training run decoding photos it never
  saw at several steps (the run's ``checkpoint-NNNNNN.pt`` snapshots, or checkpoint files
  given by path), then an optional folder of MDAN outputs for the same photos.

::

    python docs/figures.py columns --photos P1.png P2.png --column MDAN=eval/mdan \\
        --column MGAN=eval/mgan --column Gatys=eval/gatys --out assets/readme_compare.jpg
    python docs/figures.py progression --run runs/00002-picasso --steps 1000,2000,2975 \\
        --photos P1.png --column MDAN=cache/.../samples --out assets/readme_mgan.jpg

Look at the result before committing it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from mgan import cli, io
from mgan.errors import InputError

LABEL_H = 22  # px of the label row above each column


def find_output(folder: Path, stem: str) -> Path:
    """The output ``<stem>.<ext>`` in ``folder`` (:func:`mgan.io.find_image`); InputError if there is none."""
    found = io.find_image(folder, stem)
    if found is None:
        raise InputError(f"no output for {stem} in {folder}")
    return found


def labelled_grid(labels: list[str], rows: list[list[torch.Tensor]], pad: int = 4) -> Image.Image:
    """A white sheet: ``labels`` over the columns, then ``rows`` of images ``[1, 3, h, w]``
    (each row one height; a column as wide as its widest image)."""
    ncol = len(labels)
    if any(len(r) != ncol for r in rows):
        raise ValueError("every row needs one image per label")
    widths = [max(r[c].shape[-1] for r in rows) for c in range(ncol)]
    heights = [max(im.shape[-2] for im in r) for r in rows]
    sheet = Image.new("RGB", (sum(widths) + pad * (ncol + 1), LABEL_H + sum(heights) + pad * (len(rows) + 1)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=15)  # Pillow >= 10.1 with FreeType: a readable size
    except (TypeError, ImportError, OSError):
        font = ImageFont.load_default()
    x = pad
    for c, label in enumerate(labels):
        tw = draw.textlength(label, font=font)
        draw.text((x + (widths[c] - tw) / 2, 3), label, fill="black", font=font)
        x += widths[c] + pad
    y = LABEL_H + pad
    for r, row in enumerate(rows):
        x = pad
        for c, im in enumerate(row):
            arr = (im[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
            sheet.paste(Image.fromarray(arr), (x + (widths[c] - im.shape[-1]) // 2, y))
            x += widths[c] + pad
        y += heights[r] + pad
    return sheet


def _load(path: Path, h: int) -> torch.Tensor:
    return io.resize_to_height(io.load_image(path), h)


def columns(photos: list[Path], cols: list[tuple[str, Path]], height: int) -> Image.Image:
    """Rows: each photo, then its output in each ``(label, folder)``."""
    rows = [[_load(p, height)] + [_load(find_output(folder, p.stem), height) for _, folder in cols] for p in photos]
    return labelled_grid(["photo"] + [name for name, _ in cols], rows)


def checkpoint_release(checkpoint: Path, config: Path, out: Path) -> int:
    """Write G of a training checkpoint as a release file at ``out`` (G as the run's release
    stage would write it at that step, without the painting's colours, so it decodes with the
    ``minmax`` post-process, close to G's raw output); returns the checkpoint's step."""
    from mgan.generator import Generator, save_release  # noqa: PLC0415
    from mgan.training.config import load_config  # noqa: PLC0415
    from mgan.training.release import fp16_safe  # noqa: PLC0415

    cfg = load_config(config)
    state = io.load_checkpoint(checkpoint)  # a broken file: one InputError line
    try:
        G = Generator(cfg.model)
        G.load_state_dict(state["G"])
        step = int(state["step"])
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise InputError(f"{checkpoint}: not a checkpoint of this run's G ({type(e).__name__})") from e
    G.eval()
    save_release(fp16_safe(G), out)
    return step


def progression(run: Path, steps: list[int], photos: list[Path], cols: list[tuple[str, Path]], size: int,
                height: int, device: torch.device, postprocess: str = "auto") -> Image.Image:
    """Rows: each photo, G of ``run`` at each step (``run/checkpoint-NNNNNN.pt``, or the
    release ``run/generator.safetensors`` for the run's last step), then ``cols``. Every step
    is decoded with ``postprocess`` (``mgan.decode``'s; ``auto`` gives a checkpoint, which
    carries no painting colours, ``minmax`` and a release with them ``match``: pass ``none``
    to show every column as it leaves G)."""
    from mgan.decode import Decoder  # noqa: PLC0415

    config = run / "config.yaml"
    if not config.is_file():
        raise InputError(f"{run}: not a run folder (no config.yaml)")
    images = [io.load_image(p, max_side=size, min_side=16) for p in photos]
    outs: list[list[torch.Tensor]] = [[] for _ in photos]
    labels = ["photo"]
    with tempfile.TemporaryDirectory() as tmp:
        for step in steps:
            ck = run / f"checkpoint-{step:06d}.pt"
            if ck.is_file():
                model = Path(tmp) / f"g{step}.safetensors"
                checkpoint_release(ck, config, model)
            elif (run / "generator.safetensors").is_file() and step == _final_step(run):
                model = run / "generator.safetensors"
            else:
                raise InputError(f"{run}: no checkpoint-{step:06d}.pt (and {step} is not the released step)")
            dec = Decoder(model, device=device, precision="fp32", postprocess=postprocess)
            for i, x in enumerate(images):
                outs[i].append(io.resize_to_height(dec.decode(x).cpu(), height))
            labels.append(f"step {step}")
    rows = [[io.resize_to_height(x, height), *o] + [_load(find_output(folder, p.stem), height) for _, folder in cols]
            for x, o, p in zip(images, outs, photos, strict=True)]
    return labelled_grid(labels + [name for name, _ in cols], rows)


def _final_step(run: Path) -> int | None:
    from mgan.generator import load_release  # noqa: PLC0415

    _, extra = load_release(run / "generator.safetensors")
    return extra.get("steps")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/figures.py", description=__doc__.split("\n\n")[0],
                                epilog="example: python docs/figures.py columns --photos a.png "
                                       "--column MDAN=eval/mdan --out /tmp/fig.jpg")
    from mgan.decode import POSTPROCESS  # noqa: PLC0415 (torch is loaded by then anyway)

    sub = p.add_subparsers(dest="kind", required=True)
    for name in ("columns", "progression"):
        s = sub.add_parser(name)
        s.add_argument("--photos", type=Path, nargs="+", required=True)
        s.add_argument("--column", type=cli.named_path("FOLDER"), action="append", default=[], metavar="NAME=FOLDER",
                       help="a folder of outputs named <photo stem>.<ext> (repeatable)")
        s.add_argument("--height", type=int, default=256, help="height of each cell (default 256)")
        s.add_argument("--out", type=Path, required=True, help="the figure (.jpg or .png)")
        if name == "progression":
            s.add_argument("--run", type=Path, required=True, help="a training run folder")
            s.add_argument("--steps", required=True, help="comma-separated steps, e.g. 1000,2000,2975")
            s.add_argument("--size", type=int, default=384, help="longest side G decodes at (default 384)")
            s.add_argument("--device", default="auto")
            s.add_argument("--postprocess", default="auto", choices=POSTPROCESS,
                           help="mgan.decode's post-process for every step (default auto)")
    args = p.parse_args(argv)
    return cli.run(lambda: _run(args), args=args)


def _run(args: argparse.Namespace) -> int:
    if args.height < 32:
        raise InputError(f"--height must be >= 32, got {args.height}")
    io.check_output_image(args.out)
    io.check_outputs([("--out", args.out)], [("--photos", p) for p in args.photos]
                     + [(f"--column {n}", f) for n, f in args.column])
    for path in args.photos:
        if not path.is_file():
            raise InputError(f"no such photo: {path}")
    for name, folder in args.column:
        if not folder.is_dir():
            raise InputError(f"--column {name}: no such folder: {folder}")
    if args.kind == "columns":
        sheet = columns(args.photos, args.column, args.height)
    else:
        try:
            steps = [int(s) for s in args.steps.split(",")]
        except ValueError:
            raise InputError(f"--steps: expected comma-separated integers, got {args.steps!r}") from None
        sheet = progression(args.run, steps, args.photos, args.column, args.size, args.height,
                            cli.resolve_device(args.device), args.postprocess)
    with io.atomic_write(args.out) as f:  # a failed save leaves any earlier figure whole
        sheet.save(f, format="JPEG" if args.out.suffix.lower() in (".jpg", ".jpeg") else "PNG", quality=90)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
