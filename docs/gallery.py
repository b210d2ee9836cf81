"""Regenerate ``docs/gallery.jpg``: every bundled style on a few photos, and on Perlin noise.

One row per bundled generator (:func:`mgan.zoo.bundled`), one column per photo plus a last
column decoded from Perlin noise (paper Fig. 13); the first row shows the inputs. Each style
decodes the noise at its own measured Perlin scale (:func:`mgan.noise.decode_scale`, as
``mgan decode --noise perlin`` does); the first row shows it at the general default, 64 px. Each cell
is one feed-forward pass of :class:`mgan.decode.Decoder` at ``--size`` (longest side), so
the whole gallery takes seconds per style on a CPU. Run it after adding or retraining a
model, look at the result, and commit the JPEG::

    python docs/gallery.py                                   # tubingen, golden_gate, chicago
    python docs/gallery.py --photos a.jpg b.jpg --size 384 --out /tmp/gallery.jpg
    python docs/gallery.py --card wave     # docs/models/wave.jpg: the picture of wave's card

``--card NAME`` makes one model's card picture instead: each photo beside its decode, then
the Perlin decode, in one row (default photos tubingen and potrait1, cells 256 px high).

The default photos are from ``../shared/data/photo`` (Tübingen is CC BY 3.0; see
docs/data.md for the others' status). Prints one line per style with its decode time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from torch import Tensor

from mgan import cli, io, zoo
from mgan.decode import Decoder
from mgan.errors import InputError
from mgan.noise import decode_scale, make_noise

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = ("tubingen.jpg", "golden_gate.jpg", "chicago.jpg")
CARD_PHOTOS = ("tubingen.jpg", "potrait1.jpg")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/gallery.py", description=__doc__.split("\n\n")[0],
                                epilog="example: python docs/gallery.py --size 256 --out docs/gallery.jpg")
    p.add_argument("--photos", type=Path, nargs="+", default=None,
                   help="photos (default: tubingen, golden_gate, chicago from ../shared/data/photo)")
    p.add_argument("--size", type=int, default=256, help="longest side of each decode (default 256)")
    p.add_argument("--cell", type=int, default=None,
                   help="height of each cell (default 192; 256 with --card)")
    p.add_argument("--seed", type=int, default=3, help="seed of the Perlin noise")
    p.add_argument("--card", metavar="NAME", default=None,
                   help="write only this bundled model's card picture (default out: docs/models/NAME.jpg)")
    p.add_argument("--out", type=Path, default=None, help="output image (default docs/gallery.jpg)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    return cli.run(lambda: _run(args), args=args)


def _run(args: argparse.Namespace) -> int:
    cell = args.cell or (256 if args.card else 192)
    if args.size < 32 or cell < 32:
        raise InputError(f"--size and --cell must be >= 32, got {args.size} and {cell}")
    names = CARD_PHOTOS if args.card else DEFAULT_PHOTOS
    photos = args.photos or [ROOT.parent / "shared" / "data" / "photo" / n for n in names]
    card_path = zoo.resolve(args.card) if args.card else None
    card = card_path.stem if card_path else None  # " Wave" -> wave
    models = {card: card_path} if card and card_path else zoo.bundled()
    out = args.out or (ROOT / "docs" / "models" / f"{card}.jpg" if card else ROOT / "docs" / "gallery.jpg")
    io.check_output_image(out)
    images = [io.load_image(p, max_side=args.size, min_side=16) for p in photos]  # each checked before any work
    if not models:
        raise InputError("no bundled generators in mgan/assets")
    device = cli.resolve_device(args.device)

    def noise_for(model: Path | None) -> Tensor:  # None: the general default scale
        return make_noise("perlin", args.size, args.size, seed=args.seed, scale=decode_scale("perlin", model))

    if card:
        dec = Decoder(models[card], device=device)
        cells = [c for x in images for c in (x, dec.decode(x).cpu())] + [dec.decode(noise_for(models[card])).cpu()]
        io.save_image(io.make_grid([[io.resize_to_height(c, cell) for c in cells]]), out)
        print(f"wrote {out} (card picture of {card})")
        return 0
    rows = [[io.resize_to_height(x, cell) for x in [*images, noise_for(None)]]]
    for name, path in models.items():
        dec = Decoder(path, device=device)
        t0 = time.perf_counter()
        outs = [dec.decode(x) for x in [*images, noise_for(path)]]
        print(f"{name}: {len(outs)} decodes at {args.size} px in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rows.append([io.resize_to_height(y.cpu(), cell) for y in outs])
    io.save_image(io.make_grid(rows), out)
    print(f"wrote {out} ({len(models)} styles x {len(images)} photos + Perlin noise)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
