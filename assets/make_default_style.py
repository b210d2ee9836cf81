"""Make mgan/assets/default_style.png (package data), mgan's bundled default style: a procedural 'brush stroke' painting: warm palette, dark outlines, oriented strokes."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

rng = np.random.default_rng(7)
W = H = 320
img = Image.new("RGB", (W, H), (196, 120, 60))
d = ImageDraw.Draw(img)
palette = [(214, 140, 64), (181, 92, 45), (236, 196, 120), (120, 66, 38), (70, 96, 120), (226, 170, 90), (150, 60, 40)]
# flow field: strokes follow a smooth angle field
for _ in range(2600):
    x, y = rng.uniform(-20, W + 20, 2)
    ang = np.sin(x / 60) * 1.2 + np.cos(y / 45) * 0.9
    L = rng.uniform(10, 34)
    dx, dy = np.cos(ang) * L / 2, np.sin(ang) * L / 2
    c = palette[rng.integers(len(palette))]
    c = tuple(int(np.clip(v + rng.normal(0, 12), 0, 255)) for v in c)
    d.line([(x - dx, y - dy), (x + dx, y + dy)], fill=c, width=int(rng.integers(3, 8)))
# dark contour strokes (Picasso-like outlines)
for _ in range(70):
    x, y = rng.uniform(0, W, 2)
    pts = []
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(4, 10))):
        pts.append((x, y))
        ang += rng.normal(0, 0.35)
        x += np.cos(ang) * 9
        y += np.sin(ang) * 9
    d.line(pts, fill=(30, 22, 20), width=int(rng.integers(2, 5)), joint="curve")
img = img.filter(ImageFilter.GaussianBlur(0.7))
img.save(Path(__file__).resolve().parent.parent / "mgan" / "assets" / "default_style.png", optimize=True)
