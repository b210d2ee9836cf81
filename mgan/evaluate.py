"""Compare stylised outputs of MDAN, MGAN and the seed baselines with numbers and a side-by-side page.

For each method and content photo the output is scored against the style image and the
photo, all resized to one evaluation size and seen through one fp32 VGG-19:

* **style distance**: sliced Wasserstein distance (:func:`mgan.metrics.sliced_wasserstein`)
  between the output's and the style's feature vectors on relu1_1 ... relu5_1, divided by
  the spread of the style's projected features (so layers are comparable; 0 = same
  distribution), and the relative Gram distance ``||G - A|| / ||A||`` (mean over layers).
  Gram methods optimise the second moments directly, so their Gram distance is low by
  construction; the SWD compares whole marginals.
* **patch coherence**: the mean distance of every 3x3 relu3_1 neural patch of the output
  (stride 2) to its nearest style patch (stride 1), relative to the mean style-patch
  norm: low when every local patch of the output exists in the style, the Markovian
  property MGAN and CNNMRF aim for (paper Sec. 5, Figs. 11-12).
  ``patch NCC`` is ``1 - mean max cosine`` of the same patches (CNNMRF's matching score),
  which ignores patch energy: faint, washed-out outputs do not score well on it for
  merely being faint.
* **content distance**: ``||Phi(out) - Phi(photo)||^2 / ||Phi(photo)||^2`` on relu4_1.
* **checkerboard**: :func:`mgan.metrics.checkerboard_score` of the output at its own
  resolution (before resizing, which would move an 8 px period off the pixel grid): dB by
  which the spectrum at multiples of 1/8 cycle per pixel stands above its neighbourhood,
  the 8 px pattern of a fractional-strided G; photos score about 0 to 1 dB. Left out for
  outputs under 64 px a side.
* **time** per image, when the method folder holds a ``times.json`` (``{stem: seconds}``).

``--generate`` first produces the outputs with this package's engines (reduced iterations
for CPU budgets; the page states what was used); ``--method NAME=FOLDER`` adds existing
outputs (a folder of ``<photo stem>.png``, e.g. an MDAN batch run or a decode folder).

CLI::

    python -m mgan.evaluate --style picasso.jpg --photos a.jpg b.jpg c.jpg \\
        --generate mdan,mgan,gatys,cnnmrf,perceptual --perceptual-checkpoint RUN/final.pt --out eval/
    python -m mgan.evaluate --style picasso.jpg --photos a.jpg b.jpg --generate texture_nets \\
        --texture-nets-checkpoint RUN/final.pt --out eval/
    python -m mgan.evaluate --style picasso.jpg --photo-dir photos/ --method mdan=mdan_out/ --out eval/
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan import cli, io, losses, metrics, patches, precision
from mgan.cli import resolve_device
from mgan.errors import ConfigError, InputError
from mgan.io import resize_longest
from mgan.vgg import VGG19Encoder

if TYPE_CHECKING:  # a baseline is imported only when its method is asked for
    from mgan.texture_nets import PyramidGenerator, TextureNetsConfig

METHODS = ("mdan", "mgan", "gatys", "cnnmrf", "perceptual", "texture_nets")  # page column order
LABELS = {"photo": "photo (input)", "mdan": "MDAN", "mgan": "MGAN", "gatys": "Gatys", "cnnmrf": "CNNMRF",
          "perceptual": "Perceptual (Johnson)", "texture_nets": "Texture Networks (Ulyanov)"}
SWD_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
COHERENCE_LAYER = "relu3_1"
CONTENT_LAYER = "relu4_1"


@dataclass
class EvalConfig:
    """Sizes and budgets of an evaluation run."""

    size: int = 256  # longest side of generated outputs
    eval_size: int = 256  # longest side at which outputs and photos are scored
    style_size: int = 256  # longest side of the style image for scoring and for the engines
    projections: int = 128  # SWD random directions per layer
    patch_size: int = 3  # coherence: neural patch side on relu3_1
    gatys_iterations: int = 150  # L-BFGS (neural-style: 1000)
    cnnmrf_iterations: int = 40  # L-BFGS per pyramid level, 3 levels (original: 100)
    mdan_iterations: int = 125  # as the paper
    seed: int = 0
    precision: str = "auto"  # of the engines that generate outputs ("auto": bf16 where native); scoring is fp32
    # G's output post-process (mgan.decode: auto = the painting's colour match where the model
    # carries them; "none" scores G's output as it leaves G)
    mgan_postprocess: str = "auto"
    mgan_margin: int = 32  # px of reflected context around each decoded photo (mgan.decode.MARGIN; 0: none)

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        for name in ("size", "eval_size", "style_size"):
            if getattr(self, name) < 64:
                raise ConfigError(f"{name}: must be >= 64, got {getattr(self, name)}")
        if self.size % 8:
            raise ConfigError(f"size: must be a multiple of 8 (MDAN), got {self.size}")
        if self.projections < 1 or self.patch_size < 1:
            raise ConfigError("projections and patch_size must be >= 1")
        for name in ("gatys_iterations", "cnnmrf_iterations", "mdan_iterations"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0")
        precision.check(self.precision)
        from mgan.decode import POSTPROCESS  # noqa: PLC0415

        if self.mgan_postprocess not in POSTPROCESS:
            raise ConfigError(f"mgan_postprocess: must be one of {', '.join(POSTPROCESS)}, got {self.mgan_postprocess!r}")
        if self.mgan_margin < 0:
            raise ConfigError(f"mgan_margin: must be >= 0 px, got {self.mgan_margin}")


# ---------------------------------------------------------------------------- metrics


class Scorer:
    """Scores images against one style (and their photos) in a fixed fp32 VGG-19.

    Args:
        style: ``[1, 3, H, W]`` in ``[0, 1]`` (resized to ``config.style_size``).
        encoder: optional shared fp32 VGG with relu1_1 ... relu5_1 taps.
    """

    def __init__(self, style: Tensor, config: EvalConfig, device: torch.device | str = "cpu",
                 encoder: VGG19Encoder | None = None) -> None:
        self.cfg = config
        self.device = torch.device(device)
        taps = tuple(dict.fromkeys((*SWD_LAYERS, COHERENCE_LAYER, CONTENT_LAYER)))
        if encoder is not None and not set(taps) <= set(encoder.layers):
            raise ValueError(f"the shared encoder lacks taps {sorted(set(taps) - set(encoder.layers))}")
        self.encoder = (encoder or VGG19Encoder(taps, precision="fp32")).to(self.device)
        style = resize_longest(style, config.style_size).to(self.device)
        with torch.no_grad():
            feats = {k: v.float() for k, v in self.encoder(style).items()}
        self.style_feats = feats
        self.style_grams = {k: losses.gram(feats[k]) for k in SWD_LAYERS}
        # Spread of the style's projected features, the SWD unit per layer (same directions).
        self.spread = {}
        for k in SWD_LAYERS:
            pts = feats[k][0].reshape(feats[k].shape[1], -1).T
            dirs = self._directions(k, pts.shape[1])
            self.spread[k] = float((pts @ dirs).std(dim=0).pow(2).mean().sqrt().clamp_min(1e-12))
        sp = patches.extract_patches(feats[COHERENCE_LAYER], config.patch_size, 1)
        self.style_patches = patches.flatten_patches(sp)
        self.style_patch_norm = float(self.style_patches.norm(dim=1).mean())
        self.style_filters = patches.normalize_patches(sp)

    def _directions(self, layer: str, channels: int) -> Tensor:
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + SWD_LAYERS.index(layer))
        dirs = torch.randn(channels, self.cfg.projections, generator=gen)
        return (dirs / dirs.norm(dim=0, keepdim=True)).to(self.device)

    @torch.no_grad()
    def score(self, output: Tensor, photo: Tensor | None) -> dict[str, float]:
        """Metrics of one output ``[1, 3, H, W]`` (resized to the photo's evaluation size)."""
        cfg = self.cfg
        ref = resize_longest(photo, cfg.eval_size) if photo is not None else None
        if ref is not None:
            out = F.interpolate(output, size=ref.shape[-2:], mode="bicubic", align_corners=False,
                                antialias=True).clamp(0, 1)
        else:
            out = resize_longest(output, cfg.eval_size)
        feats = {k: v.float() for k, v in self.encoder(out.to(self.device)).items()}
        row: dict[str, float] = {}
        for k in SWD_LAYERS:
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + SWD_LAYERS.index(k))
            swd = metrics.sliced_wasserstein(feats[k], self.style_feats[k], cfg.projections, gen)
            row[f"swd_{k}"] = float(swd) / self.spread[k]
        row["swd_mean"] = sum(row[f"swd_{k}"] for k in SWD_LAYERS) / len(SWD_LAYERS)
        row["gram"] = sum(float(metrics.gram_distance(feats[k], self.style_grams[k])) for k in SWD_LAYERS) / len(
            SWD_LAYERS)
        q = patches.flatten_patches(patches.extract_patches(feats[COHERENCE_LAYER], cfg.patch_size, 2))
        dist, _ = patches.nearest_distance(q, self.style_patches)
        row["coherence"] = float(dist.mean()) / self.style_patch_norm
        # The same search by normalised cross-correlation (CNNMRF's matching): blind to patch energy,
        # so flat, low-activation outputs do not look coherent merely for being faint.
        idx = patches.match_ncc(q, self.style_filters)
        cos = (q / q.norm(dim=1, keepdim=True).clamp_min(1e-8) * self.style_filters[idx]).sum(1)
        row["coherence_ncc"] = float(1 - cos.mean())
        if ref is not None:
            with torch.no_grad():
                pf = self.encoder(ref.to(self.device), [CONTENT_LAYER])[CONTENT_LAYER].float()
            row["content"] = float((feats[CONTENT_LAYER] - pf).pow(2).sum() / pf.pow(2).sum().clamp_min(1e-12))
        if min(output.shape[-2:]) >= metrics.CHECKERBOARD_MIN_SIDE:  # on the output's own pixel grid
            row["checkerboard"] = metrics.checkerboard_score(output)
        return row


# ---------------------------------------------------------------------------- generation


TEXTURE_NETS_NEEDED = ("--generate texture_nets needs --texture-nets-checkpoint RUN/final.pt (train one with "
                       "python -m mgan.texture_nets train --mode style --style STYLE --data PHOTOS)")


def _texture_nets_model(path: Path) -> tuple[PyramidGenerator, TextureNetsConfig]:
    """A style-mode Texture Networks generator and its config; InputError for a texture-mode one."""
    from mgan import texture_nets  # noqa: PLC0415

    net, tcfg = texture_nets.load_model(path)
    if tcfg.mode != "style":
        raise InputError(f"--texture-nets-checkpoint {path}: a texture-mode generator takes no photo; "
                            "train one with --mode style")
    return net, tcfg


def _read_times(folder: Path) -> dict[str, float]:
    path = folder / "times.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not a JSON file of {{photo stem: seconds}}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object {{photo stem: seconds}}")
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def _write_times(folder: Path, times: dict[str, float]) -> None:
    with io.atomic_write(folder / "times.json", "w") as f:
        json.dump(times, f, indent=1)


def generate(
    method: str,
    photos: list[Path],
    style: Tensor,
    out_dir: Path,
    config: EvalConfig,
    device: torch.device,
    perceptual_checkpoint: Path | None = None,
    mgan_model: Path | None = None,
    progress: bool = True,
    texture_nets_checkpoint: Path | None = None,
    mdan_warmup: list[Path] | None = None,
) -> tuple[Path, str]:
    """Stylise ``photos`` with one method into ``out_dir/<method>/<stem>.png`` (+ ``times.json``).

    Already present outputs are kept (resumable). Returns the folder and a one-line
    note of the settings used (for the page).
    """
    cfg = config
    folder = out_dir / method
    io.check_writable(folder)
    times = _read_times(folder)
    todo = [p for p in photos if io.find_image(folder, p.stem) is None]
    style_img = resize_longest(style, cfg.style_size)
    prec = precision.resolve(cfg.precision, device)  # what the engines below will resolve "auto" to
    note = ""
    # The iterative engines are built by make(), called only when a photo needs them;
    # the feed-forward ones load their model first (their notes report its training).
    if method == "gatys":
        from mgan.gatys import Gatys, GatysConfig  # noqa: PLC0415
        from mgan.gatys import resolve_precision as gatys_precision  # noqa: PLC0415

        gcfg = GatysConfig(size=cfg.size, style_size=cfg.style_size, iterations=cfg.gatys_iterations,
                           precision=cfg.precision, seed=cfg.seed)
        note = (f"L-BFGS {gcfg.iterations} iterations from the photo (neural-style: 1000), content relu4_2 x5, "
                f"style relu1_1-5_1 x100, {gatys_precision(gcfg, device)[0]} VGG, {cfg.size} px")

        def make() -> Callable[[Tensor], Tensor]:
            engine = Gatys(style_img, gcfg, device)
            return lambda photo: engine.run(photo)[0]
    elif method == "cnnmrf":
        from mgan.cnnmrf import CNNMRF, CNNMRFConfig  # noqa: PLC0415

        ccfg = CNNMRFConfig(size=cfg.size, style_size=cfg.style_size, iterations=cfg.cnnmrf_iterations,
                            seed=cfg.seed, precision=cfg.precision)
        note = (f"3 levels x {ccfg.iterations} L-BFGS iterations (original: 3 x 100), MRF relu3_1+relu4_1, "
                f"content relu4_2 x20, {prec}, {cfg.size} px")

        def make() -> Callable[[Tensor], Tensor]:
            engine = CNNMRF(style_img, ccfg, device)
            return lambda photo: engine.run(photo)[0]
    elif method == "mdan":
        from mgan.mdan import MDAN, MDANConfig  # noqa: PLC0415

        mcfg = MDANConfig(size=cfg.size, style_size=cfg.style_size, iterations=cfg.mdan_iterations, seed=cfg.seed,
                          precision=cfg.precision)
        warm = mdan_warmup or []
        note = (f"{mcfg.iterations} iterations per photo, D carried over from photo to photo"
                f"{f' after warm-up on {len(warm)} photos' if warm else ' (no warm-up set)'}, {prec}, {cfg.size} px")

        def make() -> Callable[[Tensor], Tensor]:
            engine = MDAN(style_img, mcfg, device)
            for p in warm:  # batch mode's warm-up: D learns the style on these first (outputs discarded)
                engine.synthesize(io.load_image(p, max_side=cfg.size, multiple=8, min_side=mcfg.min_side),
                                  progress=progress, desc=f"warm-up {p.name}")
            return lambda photo: engine.synthesize(photo, progress=progress)[0]
    elif method == "perceptual":
        from mgan import perceptual  # noqa: PLC0415

        if perceptual_checkpoint is None:
            raise InputError("--generate perceptual needs --perceptual-checkpoint RUN/final.pt "
                                "(train one with python -m mgan.perceptual train)")
        net, pcfg = perceptual.load_model(perceptual_checkpoint)
        step = io.load_checkpoint(perceptual_checkpoint).get("step", "?")
        note = (f"one forward pass of a network trained {step} steps (Johnson: 40k) on {pcfg.image_size} px crops, "
                f"batch {pcfg.batch_size}; {perceptual_checkpoint}")

        def make() -> Callable[[Tensor], Tensor]:
            return lambda photo: perceptual.apply(net, photo, device, cfg.precision)
    elif method == "texture_nets":
        from mgan import texture_nets  # noqa: PLC0415

        if texture_nets_checkpoint is None:
            raise InputError(TEXTURE_NETS_NEEDED)
        tnet, tcfg = _texture_nets_model(texture_nets_checkpoint)
        step = io.load_checkpoint(texture_nets_checkpoint).get("step", "?")
        note = (f"one forward pass (noise seed {cfg.seed}) of a pyramid generator trained {step} steps "
                f"(texture_nets: 50k) on {tcfg.image_size} px crops, batch {tcfg.batch_size}, {tcfg.norm} norm; "
                f"{texture_nets_checkpoint}")

        def make() -> Callable[[Tensor], Tensor]:
            return lambda photo: texture_nets.stylize(tnet, tcfg, photo, cfg.seed, device, cfg.precision)
    elif method == "mgan":
        from mgan.decode import DEFAULT_MODEL, Decoder  # noqa: PLC0415

        model = mgan_model or DEFAULT_MODEL
        if not Path(model).is_file():
            raise FileNotFoundError(str(model))
        decoder = Decoder(model, device=device, precision=cfg.precision, postprocess=cfg.mgan_postprocess,
                          margin=cfg.mgan_margin)
        note = (f"feed-forward decode with {model} ({prec}, post-process {decoder.postprocess}, "
                f"border margin {decoder.margin} px)")

        def make() -> Callable[[Tensor], Tensor]:
            return decoder.decode
    else:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if not todo:
        return folder, note
    run = make()
    for p in todo:
        photo = io.load_image(p, max_side=cfg.size, multiple=8, min_side=64)
        t0 = time.perf_counter()
        img = run(photo)
        times[p.stem] = time.perf_counter() - t0
        io.save_image(img, folder / f"{p.stem}.png")
        _write_times(folder, times)
        if progress:
            print(f"{method}: {p.name} in {times[p.stem]:.1f} s", file=sys.stderr)
    return folder, note


# ---------------------------------------------------------------------------- report


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def _fmt_db(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.1f}"  # photos vary by ~1 dB: more digits are noise


def _fmt_time(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{1000 * x:.0f} ms" if x < 1 else f"{x:.1f} s"


def summarize(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean of every metric over photos, per method."""
    out = {}
    for method, per_photo in results.items():
        keys = sorted({k for row in per_photo.values() for k in row})
        out[method] = {k: sum(r[k] for r in per_photo.values() if k in r) / max(1, sum(k in r for r in per_photo.values()))
                       for k in keys}
    return out


def table(summary: dict[str, dict[str, float]]) -> str:
    """Markdown table of the per-method means (lower is closer / more coherent)."""
    short = [k.replace("relu", "r") for k in SWD_LAYERS]
    head = ["method", *[f"SWD {s}" for s in short], "SWD mean", "Gram dist", "patch coh.", "patch NCC", "content",
            "checker. dB", "time/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, row in summary.items():
        cells = [LABELS.get(method, method), *[_fmt(row.get(f"swd_{k}")) for k in SWD_LAYERS],
                 _fmt(row.get("swd_mean")), _fmt(row.get("gram")), _fmt(row.get("coherence")),
                 _fmt(row.get("coherence_ncc")), _fmt(row.get("content")), _fmt_db(row.get("checkerboard")),
                 _fmt_time(row.get("seconds"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_page(
    out_dir: Path, style_path: Path, photos: list[Path], columns: dict[str, Path | None], notes: dict[str, str],
    table_md: str, eval_size: int,
) -> tuple[Path, Path]:
    """Write ``index.html`` and ``page.md``: the style, then one row per photo, one column per method.

    Images are copied (resized to ``eval_size``) under ``out_dir/page/`` so the page is
    self-contained. A method whose column is ``None`` is listed with its note instead.
    """
    rows = []
    style_rel = f"page/style{style_path.suffix.lower() if style_path.suffix.lower() in ('.png', '.jpg') else '.png'}"
    io.save_image(resize_longest(io.load_image(style_path), eval_size), out_dir / style_rel)
    present = {m: f for m, f in columns.items() if f is not None}  # insertion-ordered, as the list was
    for p in photos:
        cells: list[tuple[str, str | None]] = []
        src = resize_longest(io.load_image(p), eval_size)
        rel = f"page/photo_{p.stem}.png"
        io.save_image(src, out_dir / rel)
        cells.append(("photo", rel))
        for m, folder in present.items():
            found = io.find_image(folder, p.stem)
            if found is None:
                cells.append((m, None))
                continue
            rel = f"page/{m}_{p.stem}.png"
            io.save_image(resize_longest(io.load_image(found), eval_size), out_dir / rel)
            cells.append((m, rel))
        rows.append((p.stem, cells))
    heads = ["photo", *present]
    # Markdown
    md = ["# Side by side", "", f"Style: ![style]({style_rel})", "", table_md, "",
          "| " + " | ".join(LABELS.get(h, h) for h in heads) + " |", "|" + "---|" * len(heads)]
    for stem, cells in rows:
        md.append("| " + " | ".join(f"![{m} {stem}]({rel})" if rel else "missing" for m, rel in cells) + " |")
    md += ["", "Settings:", ""] + [f"- **{LABELS.get(m, m)}**: {n}" for m, n in notes.items()]
    md_path = out_dir / "page.md"
    with io.atomic_write(md_path, "w") as f:
        f.write("\n".join(md) + "\n")
    # HTML
    esc = html.escape
    h = ["<!doctype html><meta charset='utf-8'><title>mgan evaluation</title>",
         "<style>body{font-family:sans-serif}td,th{padding:4px;text-align:center;vertical-align:top}"
         "img{max-width:256px}table.m td{font-family:monospace}</style>",
         "<h1>Side by side</h1>", f"<p>Style: <img src='{esc(style_rel)}'></p>",
         "<table><tr>" + "".join(f"<th>{esc(LABELS.get(x, x))}</th>" for x in heads) + "</tr>"]
    for stem, cells in rows:
        h.append("<tr>" + "".join(f"<td><img src='{esc(rel)}' alt='{esc(m)} {esc(stem)}'></td>" if rel
                                  else "<td>missing</td>" for m, rel in cells) + "</tr>")
    h.append("</table><h2>Metrics (mean over photos; lower is closer)</h2><pre>" + esc(table_md) + "</pre>")
    h.append("<h2>Settings</h2><ul>" + "".join(f"<li><b>{esc(LABELS.get(m, m))}</b>: {esc(n)}</li>"
                                               for m, n in notes.items()) + "</ul>")
    html_path = out_dir / "index.html"
    with io.atomic_write(html_path, "w") as f:
        f.write("\n".join(h) + "\n")
    return html_path, md_path


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    d = EvalConfig()
    p = argparse.ArgumentParser(
        prog="python -m mgan.evaluate",
        description="Score stylised outputs (style SWD and Gram distance, relu3_1 patch coherence, relu4_1 content "
        "distance, time) and write a side-by-side page; optionally generate the outputs first.",
        epilog="example: python -m mgan.evaluate --style picasso.jpg --photos a.jpg b.jpg c.jpg "
        "--generate gatys,cnnmrf,mdan --out eval/",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--style", type=Path, required=True, help="the style image the outputs imitate")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--photos", type=Path, nargs="+", help="content photos")
    g.add_argument("--photo-dir", type=Path, help="every image in a folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (table.md, results.json, index.html, ...)")
    p.add_argument("--method", type=cli.named_path("FOLDER"), action="append", default=[], metavar="NAME=FOLDER",
                   help="existing outputs named <photo stem>.<ext> (optional times.json); repeatable")
    p.add_argument("--generate", default="", help=f"comma-separated methods to run first: {','.join(METHODS)}")
    p.add_argument("--perceptual-checkpoint", type=Path, help="a perceptual run's final.pt (for --generate perceptual)")
    p.add_argument("--texture-nets-checkpoint", type=Path,
                   help="a style-mode texture_nets run's final.pt (for --generate texture_nets)")
    p.add_argument("--mgan-model", type=Path, help="released generator (default: the bundled mgan/assets/picasso.safetensors)")
    p.add_argument("--mgan-postprocess", default=d.mgan_postprocess,
                   help="G's output post-process (mgan.decode --postprocess): auto (default), match, stretch, minmax, "
                   "none (G's output as it is); outputs already in OUT/mgan are kept: use a new --out to compare")
    p.add_argument("--mgan-margin", type=int, default=d.mgan_margin,
                   help="px of reflected context around each decoded photo (mgan.decode --margin; 0: the plain "
                   "decode); outputs already in OUT/mgan are kept: use a new --out to compare")
    p.add_argument("--size", type=int, default=d.size, help="longest side of generated outputs")
    p.add_argument("--eval-size", type=int, default=d.eval_size, help="longest side for scoring")
    p.add_argument("--style-size", type=int, default=d.style_size)
    p.add_argument("--projections", type=int, default=d.projections)
    p.add_argument("--gatys-iterations", type=int, default=d.gatys_iterations)
    p.add_argument("--cnnmrf-iterations", type=int, default=d.cnnmrf_iterations, help="per pyramid level")
    p.add_argument("--mdan-iterations", type=int, default=d.mdan_iterations)
    p.add_argument("--mdan-warmup-dir", type=Path, help="--generate mdan: warm D up on these photos first, as "
                   "batch mode does (e.g. data/imagenet100/initial); outputs discarded")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=precision.CHOICES, default=d.precision,
                   help="of the engines run by --generate (scoring is fp32); " + precision.HELP)
    p.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args, interrupted="interrupted; finished outputs are kept and reused on the next run")


def _run(args: argparse.Namespace) -> int:
    io.set_max_pixels(args.max_pixels)
    cfg = EvalConfig(size=args.size, eval_size=args.eval_size, style_size=args.style_size,
                     projections=args.projections, gatys_iterations=args.gatys_iterations,
                     cnnmrf_iterations=args.cnnmrf_iterations, mdan_iterations=args.mdan_iterations, seed=args.seed,
                     precision=args.precision, mgan_postprocess=args.mgan_postprocess, mgan_margin=args.mgan_margin)
    cfg.validate()
    device = resolve_device(args.device)
    wanted = [m.strip() for m in args.generate.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        raise InputError(f"--generate: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not wanted and not args.method:
        raise InputError("nothing to evaluate: give --method NAME=FOLDER and/or --generate METHODS")
    for name, folder in args.method:
        if not folder.is_dir():
            raise InputError(f"--method {name}={folder}: folder not found")
    photos = args.photos if args.photos else io.list_images(args.photo_dir)
    for p in photos:
        io.check_regular_file(p, "photo")
    stems = [p.stem for p in photos]
    if len(set(stems)) != len(stems):  # outputs and scores are keyed by the stem
        dup = next(s for s in stems if stems.count(s) > 1)
        raise InputError(f"two photos share the name {dup!r}; give photos with distinct names")
    inputs = [("--style", args.style), *[("--photos", p) for p in photos], *[("--method", f) for _, f in args.method]]
    if args.photo_dir is not None:
        inputs.append(("--photo-dir", args.photo_dir))
    io.check_outputs([("--out", args.out), *[("--out", args.out / m) for m in wanted]], inputs)
    style = io.load_image(args.style, min_side=16)
    io.check_writable(args.out)
    if "perceptual" in wanted and args.perceptual_checkpoint is None:
        raise InputError("--generate perceptual needs --perceptual-checkpoint RUN/final.pt "
                            "(train one with python -m mgan.perceptual train)")
    if args.perceptual_checkpoint is not None and "perceptual" in wanted:
        from mgan.perceptual import load_model  # noqa: PLC0415

        load_model(args.perceptual_checkpoint)  # fail now, not after an hour of other methods
    if "texture_nets" in wanted:
        if args.texture_nets_checkpoint is None:
            raise InputError(TEXTURE_NETS_NEEDED)
        _texture_nets_model(args.texture_nets_checkpoint)  # fail now, as above
    warmup = io.list_images(args.mdan_warmup_dir) if args.mdan_warmup_dir is not None and "mdan" in wanted else []
    columns: dict[str, Path | None] = {}
    notes: dict[str, str] = {}
    if wanted:  # after the input checks: a bad input gets one error line
        precision.announce(cfg.precision, device)
    for m in METHODS:
        if m not in wanted:
            continue
        try:
            columns[m], notes[m] = generate(m, photos, style, args.out, cfg, device,
                                            args.perceptual_checkpoint, args.mgan_model,
                                            texture_nets_checkpoint=args.texture_nets_checkpoint,
                                            mdan_warmup=warmup)
        except FileNotFoundError as exc:
            columns[m], notes[m] = None, f"left out: no released generator at {exc} (not trained yet)"
            print(f"note: MGAN column left out, {exc} does not exist", file=sys.stderr)
    for name, folder in args.method:
        columns[name] = folder
        notes.setdefault(name, f"outputs from {folder}")
    scorer = Scorer(style, cfg, device)
    results: dict[str, dict[str, dict[str, float]]] = {"photo": {}}
    for p in photos:
        photo = io.load_image(p, max_side=cfg.size, min_side=16)
        results["photo"][p.stem] = scorer.score(photo, photo)
    for m, folder in columns.items():
        if folder is None:
            continue
        times = _read_times(folder)
        results[m] = {}
        for p in photos:
            found = io.find_image(folder, p.stem)
            if found is None:
                print(f"warning: {m}: no output for {p.stem} in {folder}", file=sys.stderr)
                continue
            photo = io.load_image(p, max_side=cfg.size, min_side=16)
            row = scorer.score(io.load_image(found), photo)
            if p.stem in times:
                row["seconds"] = times[p.stem]
            results[m][p.stem] = row
        if not results[m]:
            raise InputError(f"{m}: none of the photos has an output in {folder}")
    summary = summarize(results)
    table_md = table(summary)
    with io.atomic_write(args.out / "table.md", "w") as f:
        f.write(table_md + "\n")
    with io.atomic_write(args.out / "results.json", "w") as f:
        json.dump({"config": asdict(cfg), "style": str(args.style), "photos": [str(p) for p in photos],
                   "notes": notes, "per_photo": results, "mean": summary}, f, indent=1)
    html_path, md_path = write_page(args.out, args.style, photos, columns, notes, table_md, cfg.eval_size)
    print(table_md)
    print(f"\nwrote {args.out / 'table.md'}, {args.out / 'results.json'}, {html_path}, {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
