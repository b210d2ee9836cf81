"""Decode-time controls measured: content and style distance against ``--strength``, and the
colour change of ``--preserve-colors`` (mgan/controls.py), for one bundled model.

For every photo: G's decode once, then the output mix ``a G + (1 - a) photo`` for
``a`` = 0, 0.125, ..., 1, scored by :class:`mgan.evaluate.Scorer` (relu4_1 content
distance to the photo, style SWD to the painting). Prints a Markdown table and whether
the content distance falls monotonically as ``a`` falls; ``--picture`` also writes a
strip of the controls (photo, a = 1, 0.5, preserve colours, gradient mask).

    python bench/controls.py                          # picasso, tubingen + chicago, 256 px; ~1 min
    python bench/controls.py --style picasso --photos a.jpg b.jpg --picture docs/controls.jpg
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from mgan import controls, io, zoo
from mgan.decode import Decoder, resize, target_size
from mgan.evaluate import EvalConfig, Scorer

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
STRENGTHS = tuple(i / 8 for i in range(9))


def gradient_mask(h: int, w: int) -> torch.Tensor:
    """``[1, 1, h, w]``: black (photo) on the left, white (style) on the right, linear between."""
    return torch.linspace(0, 1, w).view(1, 1, 1, w).expand(1, 1, h, w).clone()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--style", default="picasso", help="a bundled model")
    p.add_argument("--style-image", type=Path, default=DATA / "style" / "picasso.jpg", help="its painting, for SWD")
    p.add_argument("--photos", type=Path, nargs="+",
                   default=[DATA / "photo" / "tubingen.jpg", DATA / "photo" / "chicago.jpg"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--picture", type=Path, help="write a strip of the controls on the first photo here")
    args = p.parse_args()

    dec = Decoder(zoo.resolve(args.style), device="cpu", precision="fp32")
    scorer = Scorer(io.load_image(args.style_image), EvalConfig(eval_size=args.size))
    rows: dict[float, list[dict[str, float]]] = {a: [] for a in STRENGTHS}
    for path in args.photos:
        img = io.load_image(path)
        w, h = target_size(img.shape[-1], img.shape[-2], args.size)
        photo = resize(img, w, h)
        styled = dec.decode(photo)
        for a in STRENGTHS:
            y = controls.apply(styled.clone(), photo, controls.Controls(strength=a))
            rows[a].append(scorer.score(y, photo))
        kept = controls.apply(styled.clone(), photo, controls.Controls(preserve_colors=True))
        chroma = lambda x: controls.rgb_to_yiq(x)[:, 1:]  # noqa: E731
        err = (chroma(kept) - chroma(photo)).abs()
        print(f"{path.name}: preserve-colors |IQ(out) - IQ(photo)| mean {err.mean():.4f}, max {err.max():.3f} "
              f"(clamped pixels: {(err.amax(1) > 1e-4).float().mean():.1%}); "
              f"without it mean {(chroma(styled) - chroma(photo)).abs().mean():.4f}")
        if args.picture is not None and path == args.photos[0]:
            mask = controls.Controls(mask=gradient_mask(h, w))
            strip = [photo, styled, controls.apply(styled.clone(), photo, controls.Controls(strength=0.5)),
                     kept, controls.apply(styled.clone(), photo, mask)]
            io.save_image(torch.cat(strip, dim=-1), args.picture)
    mean = {a: {k: sum(r[k] for r in rs) / len(rs) for k in ("content", "swd_mean")} for a, rs in rows.items()}
    print(f"\n{args.style}, {', '.join(p.name for p in args.photos)} at {args.size} px (means)\n")
    print("| strength a | content distance (relu4_1) | style SWD |\n|---:|---:|---:|")
    for a in STRENGTHS:
        print(f"| {a:.3f} | {mean[a]['content']:.4f} | {mean[a]['swd_mean']:.4f} |")
    per_photo = [[rows[a][i]["content"] for a in STRENGTHS] for i in range(len(args.photos))]
    mono = all(all(x < y for x, y in zip(c[:-1], c[1:], strict=False)) for c in per_photo)
    print(f"\ncontent distance rises strictly with a for every photo: {mono}; at a = 0: "
          f"{max(c[0] for c in per_photo):.2e}")
    if args.picture is not None:
        print(f"wrote {args.picture} (photo | a = 1 | a = 0.5 | preserve colours | gradient mask)")


if __name__ == "__main__":
    main()
