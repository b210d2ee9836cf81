"""The model zoo: bundled generators (``mgan/assets/<name>.safetensors``) and their model cards.

A bundled generator is a release file (:func:`mgan.generator.save_release`) in
``mgan/assets/`` (package data, :mod:`mgan.assets`); its name is the file's stem
(``picasso``), which ``python -m mgan.decode --style NAME`` resolves. Its **model card**
is a JSON object in the safetensors metadata under :data:`CARD_KEY`, next to the
generator's ``config`` and ``extra``, so the card travels with the weights.
:data:`CARD_FIELDS` lists the fields every bundled model has; ``docs/models/<name>.md``
is generated from the card (``python -m mgan.zoo page``).

``mgan.train`` writes the fields it knows (:data:`TRAINING_FIELDS`) into every new
release; the style's title, painter, year, source, licence status, the evaluation
metrics and the picture are added with ``python -m mgan.zoo set``. No metadata may hold
an absolute path of the machine that wrote it (:func:`scrub_paths`).

CLI::

    python -m mgan.zoo list
    python -m mgan.zoo show picasso
    python -m mgan.zoo set mgan/assets/wave.safetensors --set title="The Great Wave off Kanagawa" \\
        --set painter="Katsushika Hokusai" --metrics eval/results.json
    python -m mgan.zoo page picasso --out docs/models/picasso.md
    python -m mgan.zoo colour wave ../shared/data/style/wave.jpg
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from mgan import cli, colour, io
from mgan.assets import ASSETS
from mgan.errors import InputError, one_line

CARD_KEY = "card"
# Field -> what it holds. Values are JSON: text, numbers, or (config, metrics) objects.
CARD_FIELDS: dict[str, str] = {
    "title": "the painting's title",
    "painter": "who painted it",
    "year": "when (text: '1907', 'c. 1831')",
    "source": "the style image: file in ../shared/data and where it comes from",
    "licence": "copyright status of the painting, one line (also in --list-models)",
    "config": "training config summary: experiment and the settings that shape the style",
    "photos": "number of training photos",
    "steps": "training steps (batches of G)",
    "wall_time_s": "wall-clock seconds of the training pipeline (MDAN targets to release)",
    "cpu": "the hardware it was trained on",
    "metrics": "mgan.evaluate means over ../shared/data/photo (lower is closer)",
    "picture": "repository-relative path of a picture of the model at work",
}
OPTIONAL_FIELDS: dict[str, str] = {"notes": "a paragraph for the card page: what the model does, caveats"}
TRAINING_FIELDS = ("config", "photos", "steps", "wall_time_s", "cpu")  # written by mgan.train's release
# Longest side the painting's colour moments are measured at: its full resolution up to this.
# Not MDAN's style size (256): downscaling smooths the painting's fine colour detail away, and
# matched to those narrower moments the bundled models' decodes scored up to 10% further from
# their paintings (docs/training.md, "G's output gets its painting's colours").
COLOUR_SIDE = 1024
METRIC_KEYS = ("swd_mean", "gram", "coherence", "coherence_ncc", "content", "seconds")


# ----------------------------------------------------------------------------- reading


def bundled(assets: Path = ASSETS) -> dict[str, Path]:
    """``{name: path}`` of the bundled generators, sorted by name."""
    return {p.stem: p for p in sorted(Path(assets).glob("*.safetensors"))}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of ``path`` (header only, no tensors read)."""
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise InputError(f"generator file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a safetensors generator ({one_line(exc)[:160]})") from None


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The model card of a release file (``{}`` when it has none)."""
    meta = read_metadata(path)
    try:
        card = json.loads(meta.get(CARD_KEY, "{}"))
    except json.JSONDecodeError:
        raise InputError(f"{path}: its model card is not valid JSON") from None
    if not isinstance(card, dict):
        raise InputError(f"{path}: its model card is not a JSON object")
    return card


def missing_fields(card: dict[str, Any]) -> list[str]:
    """Card fields that are absent or empty (``None``, ``""``, ``{}``)."""
    return [k for k in CARD_FIELDS if card.get(k) in (None, "", {}, [])]


def resolve(name: str, assets: Path = ASSETS) -> Path:
    """The file of the bundled model ``name``; :class:`InputError` listing the valid names otherwise."""
    models = bundled(assets)
    key = name.strip().lower().removesuffix(".safetensors")
    if key in models:
        return models[key]
    valid = ", ".join(models) or f"none ({assets} holds no .safetensors file)"
    raise InputError(f"unknown style {name!r}; bundled models: {valid} (or give --model FILE.safetensors)")


def listing(assets: Path = ASSETS) -> list[str]:
    """One line per bundled model: name, painter, file size, licence status."""
    models = bundled(assets)
    width = max((len(n) for n in models), default=4)
    lines = []
    for name, path in models.items():
        card = read_card(path)
        painter = str(card.get("painter", "?"))
        licence = str(card.get("licence", "licence unknown (no model card)"))
        lines.append(f"{name:<{width}}  {painter:<22}  {path.stat().st_size / 2**20:5.1f} MB  {licence}")
    return lines


# ----------------------------------------------------------------------------- writing


def _is_absolute(text: str) -> bool:
    return text.startswith(("/", "~", "\\\\")) or (len(text) > 2 and text[1] == ":" and text[2] in "\\/")


def scrub_paths(obj: Any) -> Any:
    """A copy of ``obj`` (JSON-like) with every absolute path string cut to its last component.

    Release metadata is published; ``/home/alice/data`` says nothing about the model and
    something about the machine. Relative paths (``style/picasso.jpg``) are kept.
    """
    if isinstance(obj, dict):
        return {k: scrub_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_paths(v) for v in obj]
    if isinstance(obj, str) and _is_absolute(obj):
        return Path(obj.replace("\\", "/")).name or "."
    return obj


def absolute_paths(obj: Any) -> list[str]:
    """Every string inside ``obj`` (JSON-like) that is an absolute path."""
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in absolute_paths(v)]
    if isinstance(obj, (list, tuple)):
        return [p for v in obj for p in absolute_paths(v)]
    return [obj] if isinstance(obj, str) and _is_absolute(obj) else []


def hardware(device: torch.device | str = "cpu") -> str:
    """The machine a run used, for the card: CPU model, threads and SIMD level, or the GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def _mdan_schedule(mdan: dict[str, Any]) -> str:
    """``"256 px, 40 iterations at 0.5x + 40, lr 0.045"``: the MDAN schedule of the targets
    (the coarse stage, a non-default lr and the start image named, as they change what G
    learns from; a config from before ``guided_init`` existed started from the photo)."""
    from mgan.mdan import MDANConfig  # noqa: PLC0415 (only cards of new trainings need it)

    text = f"{mdan.get('size')} px, "
    if mdan.get("coarse_iterations"):
        scale = mdan.get("coarse_scale", MDANConfig.coarse_scale)
        text += f"{mdan['coarse_iterations']} iterations at {scale}x + {mdan.get('iterations')}"
    else:
        text += f"{mdan.get('iterations')} iterations"
    lr = mdan.get("lr")
    if lr is not None and lr != MDANConfig.lr:
        text += f", lr {lr}"
    return text + (", from the photo in the style's colours" if mdan.get("guided_init") == "match" else "")


def config_summary(experiment: dict[str, Any]) -> dict[str, Any]:
    """The settings of an experiment config (:func:`mgan.config.to_dict`) that shape a style."""
    mdan, crops, train = (experiment.get(k) or {} for k in ("mdan", "crops", "train"))
    model = experiment.get("model") or {}
    summary = {
        "experiment": experiment.get("name"),
        "style": Path(str(experiment.get("style", ""))).name,
        "max_photos": experiment.get("max_photos"),
        "mdan": _mdan_schedule(mdan),
        "crops": f"{crops.get('size')} px at stride {crops.get('stride')}",
        "generator_channels": model.get("channels"),
        "generator_blocks": _blocks(model),
        "batch": train.get("batch"),
        "lr": train.get("lr"),
        "losses": f"pixel {train.get('pixel_weight')} + adversarial {train.get('adv_weight')}",
        "precision": train.get("precision"),
        "noise_pairs": _noise_pairs(experiment.get("noise") or {}),
        "weight_average": _average(train),
    }
    return scrub_paths({k: v for k, v in summary.items() if v is not None})


def _noise_pairs(noise: dict[str, Any]) -> str | None:
    """The card's line for noise pairs (mgan.training.config.NoiseConfig), None without them."""
    if not noise.get("count"):
        return None
    text = (f"{noise['count']} Perlin images of {noise.get('size')} px at {noise.get('scale'):g} px scale, "
            f"{noise.get('per_batch')} crops a step from step {noise.get('start_step')}")
    if noise.get("content_weight") is not None:  # keyed only when set, as in the stage cache
        text += f", MDAN content weight {noise['content_weight']:g}"
    return text


def _blocks(model: dict[str, Any]) -> str | None:
    """The card's line for G's residual blocks (GeneratorConfig.blocks), None for the paper's G."""
    if not model.get("blocks"):
        return None
    width = model.get("block_width") or (model.get("channels") or ["?"])[0]
    n = model["blocks"]
    return f"{n} residual block{'s' if n > 1 else ''} of width {width} after the first conv"


def _average(train: dict[str, Any]) -> str | None:
    """The card's line for weight averaging (TrainConfig.average_start), None without it."""
    if train.get("average_start") is None:
        return None
    return (f"mean of G's weights at step {train['average_start']}, every {train.get('average_every')} "
            "steps after it and the last")


def training_card(experiment: dict[str, Any], photos: int, steps: int, wall_time_s: float | None,
                  device: torch.device | str) -> dict[str, Any]:
    """The card fields a training run knows (:data:`TRAINING_FIELDS`; no wall time when ``None``)."""
    card = {"config": config_summary(experiment), "photos": int(photos), "steps": int(steps),
            "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 1), "cpu": hardware(device)}
    return {k: v for k, v in card.items() if v is not None}


def metrics_from(results_json: str | os.PathLike, method: str = "mgan") -> dict[str, Any]:
    """The card's ``metrics`` from an ``mgan.evaluate`` ``results.json``: ``method``'s means."""
    path = Path(results_json)
    try:
        data = json.loads(path.read_text())
        mean = data["mean"][method]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{path}: not an mgan.evaluate results.json with a {method!r} column") from None
    out: dict[str, Any] = {k: round(float(mean[k]), 4) for k in METRIC_KEYS if k in mean}
    out["photos"] = [Path(p).name for p in data.get("photos", [])]
    out["eval_size"] = (data.get("config") or {}).get("eval_size")
    return out


def write_card(path: str | os.PathLike, updates: dict[str, Any], out: str | os.PathLike | None = None) -> Path:
    """Merge ``updates`` into a release's card and write it back (or to ``out``), atomically.

    The tensors are copied unchanged; ``extra`` and the card are cleared of absolute paths.
    """
    path = Path(path)
    meta = read_metadata(path)
    card = {**read_card(path), **updates}
    unknown = sorted(set(updates) - set(CARD_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        fields = ", ".join([*CARD_FIELDS, *OPTIONAL_FIELDS])
        raise InputError(f"unknown card field(s) {', '.join(unknown)}; fields: {fields}")
    meta[CARD_KEY] = json.dumps(scrub_paths(card))
    return _rewrite(path, meta, out)


def _rewrite(path: Path, meta: dict[str, str], out: str | os.PathLike | None) -> Path:
    """Write the tensors of ``path`` unchanged with ``meta`` (``extra`` cleared of absolute paths)
    to ``out`` or back to ``path``, atomically."""
    from safetensors.torch import load_file, save  # noqa: PLC0415

    if "extra" in meta:
        meta["extra"] = json.dumps(scrub_paths(json.loads(meta["extra"])))
    tensors = load_file(str(path))
    target = Path(out) if out is not None else path
    with io.atomic_write(target) as f:
        f.write(save(tensors, metadata=meta))
    return target


def painting_moments(style: str | os.PathLike, max_side: int = COLOUR_SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB ``(mean [3, 1], cov [3, 3])`` (:func:`mgan.colour.moments`) of the painting ``style``
    at its own resolution, shrunk (never enlarged) to at most ``max_side`` px on its longest side."""
    side = max(io.probe_image(style))
    return colour.moments(io.load_image(style, max_side=max_side if side > max_side else None))


def write_style_colour(path: str | os.PathLike, style: str | os.PathLike, max_side: int = COLOUR_SIDE,
                       out: str | os.PathLike | None = None) -> Path:
    """Store the RGB mean and covariance of the painting ``style`` (loaded at most ``max_side`` px
    on its longest side) in a release's ``extra`` metadata, where
    :class:`mgan.decode.Decoder` finds them for its ``"match"`` post-process. Tensors unchanged."""
    path = Path(path)
    meta = read_metadata(path)
    extra = json.loads(meta.get("extra", "{}"))
    extra[colour.STYLE_COLOUR_KEY] = colour.moments_to_json(*painting_moments(style, max_side))
    meta["extra"] = json.dumps(extra)
    return _rewrite(path, meta, out)


# ----------------------------------------------------------------------------- card page


def _fmt_seconds(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return str(s)
    return f"{s:.0f} s ({s / 60:.1f} min)" if s < 3600 else f"{s / 3600:.2f} h"


def card_page(name: str, path: str | os.PathLike) -> str:
    """Markdown page of a model's card (what ``docs/models/<name>.md`` holds)."""
    path = Path(path)
    card = read_card(path)
    title = f"{card.get('title', name)}"
    lines = [f"# `{name}`: {title}, {card.get('painter', '?')} ({card.get('year', '?')})", ""]
    if card.get("picture"):
        lines += [f"![{name} at work](../../{card['picture']})", ""]
    if card.get("notes"):
        lines += [str(card["notes"]), ""]
    rows = [
        ("file", f"`mgan/assets/{path.name}` ({path.stat().st_size / 2**20:.1f} MB, fp16)"),
        ("use", f"`python -m mgan.decode --style {name} --input photo.jpg --out out.png`"),
        ("style image", card.get("source", "?")),
        ("licence", card.get("licence", "?")),
        ("training photos", card.get("photos", "?")),
        ("steps", card.get("steps", "?")),
        ("wall time", _fmt_seconds(card.get("wall_time_s", "?"))),
        ("hardware", card.get("cpu", "?")),
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    config = card.get("config") or {}
    if config:
        lines += ["## Training config", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in config.items()] + [""]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["## Metrics", "",
                  f"`python -m mgan.evaluate` means over {', '.join(metrics.get('photos', [])) or 'the photos'} "
                  f"at {metrics.get('eval_size', '?')} px (lower is closer; see the README for definitions).", "",
                  "| " + " | ".join(k for k in METRIC_KEYS if k in metrics) + " |",
                  "|" + "---|" * sum(k in metrics for k in METRIC_KEYS),
                  "| " + " | ".join(str(metrics[k]) for k in METRIC_KEYS if k in metrics) + " |", ""]
    lines += ["*Generated from the card in the file's metadata by "
              f"`python -m mgan.zoo page {name} --out docs/models/{name}.md`.*", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers and objects; anything else is text
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mgan.zoo", description="List the bundled generators, show or edit their model cards.",
        epilog="example: python -m mgan.zoo set mgan/assets/picasso.safetensors --set year=1907",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="one line per bundled model: name, painter, size, licence")
    show = sub.add_parser("show", help="print a model's card as JSON")
    show.add_argument("model", help="a bundled name or a .safetensors file")
    edit = sub.add_parser("set", help="add or change card fields (the file is rewritten, tensors unchanged)")
    edit.add_argument("model", help="a bundled name or a .safetensors file")
    edit.add_argument("--set", dest="fields", type=_value, action="append", default=[], metavar="KEY=VALUE",
                      help=f"a card field ({', '.join(CARD_FIELDS)}); VALUE is JSON or text; repeatable")
    edit.add_argument("--metrics", type=Path, help="take 'metrics' from an mgan.evaluate results.json (MGAN column)")
    col = sub.add_parser("colour", help="store the painting's RGB mean and covariance in the model (for decode's "
                         "default 'match' post-process; mgan.train writes them into every new release)")
    col.add_argument("model", help="a bundled name or a .safetensors file")
    col.add_argument("style", type=Path, help="the painting the model was trained on")
    col.add_argument("--size", type=int, default=COLOUR_SIDE,
                     help=f"longest side the painting is measured at, at most (default {COLOUR_SIDE})")
    page = sub.add_parser("page", help="write a model's card as a Markdown page")
    page.add_argument("model", help="a bundled name or a .safetensors file")
    page.add_argument("--out", type=Path, help="the .md file (default: print)")
    return p


def _model(text: str) -> tuple[str, Path]:
    p = Path(text)
    if p.suffix == ".safetensors" or p.is_file():
        if not p.is_file():
            raise InputError(f"generator file not found: {p}")
        return p.stem, p
    return text, resolve(text)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 2 bad input (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args)


def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        lines = listing()
        print("\n".join(lines) if lines else f"no bundled models in {ASSETS}")
        return 0
    name, path = _model(args.model)
    if args.command == "show":
        print(json.dumps(read_card(path), indent=1))
        return 0
    if args.command == "set":
        updates = dict(args.fields)
        if args.metrics is not None:
            updates["metrics"] = metrics_from(args.metrics)
        if not updates:
            raise InputError("nothing to set: give --set KEY=VALUE and/or --metrics results.json")
        write_card(path, updates)
        left = missing_fields(read_card(path))
        print(f"updated the card of {path}" + (f"; still missing: {', '.join(left)}" if left else ""))
        return 0
    if args.command == "colour":
        if args.size < 8:
            raise InputError(f"--size must be >= 8, got {args.size}")
        write_style_colour(path, args.style, args.size)
        print(f"stored the colours of {args.style.name} in {path}")
        return 0
    text = card_page(name, path)
    if args.out is None:
        print(text)
    else:
        io.check_outputs([("--out", args.out)], [("model", path)])
        with io.atomic_write(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
