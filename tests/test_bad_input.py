"""The bad-input matrix of issue #6, through the CLIs in-process (README "Bad input").

Every bad input gives a non-zero status and exactly one ``error: ...`` line on stderr
naming the problem, never a traceback, and leaves what the output location already
held untouched. Inputs that can be read (16-bit, grayscale, CMYK, palette, RGBA,
EXIF-rotated) are converted with one ``note:`` line and give the right pixels.
Everything is built in ``tmp_path``: tiny synthetic images, no shared data.
"""

from __future__ import annotations

import errno
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import empty_video
from PIL import Image

from mgan import cli, decode, io, mdan, perceptual, train

MDAN_FAST = ["--iterations", "0", "--size", "32", "--style-size", "40", "--device", "cpu", "--postprocess", "clip",
             "--guided-init", "photo"]  # clip + the photo as start: 0 iterations give the photo back
PRECIOUS = b"an output written by an earlier run\n"


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- input builders


def _png(path: Path, w: int = 32, h: int = 32) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:1200])
    return path


def _bomb_png(path: Path, side: int = 20000) -> Path:
    """A 100-byte PNG whose header declares ``side x side`` pixels (IHDR patched, CRC fixed)."""
    _png(path, 8, 8)
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"IHDR"
    raw[16:24] = struct.pack(">II", side, side)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))
    return path


class _RunsCode:
    """Unpickling this calls ``os.system(command)``: what ``weights_only=True`` must refuse."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- the matrix
# Each case builds its input in tmp and returns (main, argv, file that must survive).
Case = Callable[[Path], tuple[Callable[[list[str]], int], list[str], Path]]


def _decode(t: Path, src: Path | str, *extra: str, out: str = "out.png") -> tuple:
    return decode.main, ["--input", str(src), "--out", str(t / out), "--device", "cpu", "--quiet", *extra], t / out


def _decode_folder(t: Path, src: Path) -> tuple:  # with progress bars: none may start before the error
    return decode.main, ["--input", str(src), "--out", str(t / "outs"), "--device", "cpu"], t / "outs" / "a.png"


def _mdan_batch(t: Path, src: Path) -> tuple:
    return mdan.main, [*MDAN_FAST, "--content-dir", str(src), "--out", str(t / "outs")], t / "outs" / "a.png"


def _folder(path: Path, bad_name: str, bad: Callable[[Path], Path] | None = None) -> Path:
    """A folder holding a good photo ``a.png`` and ``bad(folder / bad_name)``."""
    path.mkdir()
    _png(path / "a.png")
    (bad or (lambda p: _yaml(p, "not a picture\n")))(path / bad_name)
    return path


def _mdan(t: Path, *extra: str) -> tuple:
    return mdan.main, [*MDAN_FAST, "--out", str(t / "out.png"), *extra], t / "out.png"


def _train(t: Path, text: str) -> tuple:
    cfg = _yaml(t / "exp.yaml", text)
    return train.main, [str(cfg), "--dry-run", "--outdir", str(t / "runs")], t / "runs" / "kept.txt"


def _perceptual(t: Path, text: str) -> tuple:
    (t / "photos").mkdir()
    _png(t / "photos" / "p.png")
    argv = ["train", "--config", str(_yaml(t / "p.yaml", text)), "--data", str(t / "photos"),
            "--style", str(_png(t / "s.png")), "--runs", str(t / "runs"), "--dry-run"]
    return perceptual.main, argv, t / "runs" / "kept.txt"


def _other_arch_pt(path: Path) -> Path:
    torch.save({"D": {"conv.weight": torch.zeros(4, 4, 3, 3)}, "step": 7}, path)
    return path


def _other_safetensors(path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(4, 4)}, str(path), metadata={"format": "pt"})
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pickled(path: Path, sentinel: Path) -> Path:
    path.write_bytes(pickle.dumps({"D": _RunsCode(f"touch {sentinel}")}, protocol=2))  # torch's own protocol
    return path


def _torch_pickled(path: Path, sentinel: Path) -> Path:
    torch.save({"D": _RunsCode(f"touch {sentinel}")}, path)  # zip format, as a real checkpoint
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


CASES: dict[str, tuple[Case, str]] = {
    # files and folders
    "missing-file": (lambda t: _decode(t, t / "missing.png"), "not found"),
    "missing-style": (lambda t: _mdan(t, "--style", str(t / "missing.jpg")), "image not found"),
    "non-image": (lambda t: _decode(t, _yaml(t / "notes.jpg", "not a picture\n")), "not an image file"),
    "truncated-jpeg": (lambda t: _decode(t, _truncated_jpeg(t / "cut.jpg")), "truncated"),
    "empty-folder-decode": (lambda t: _decode_folder(t, _mkdir(t / "empty")), "no images"),
    "empty-folder-mdan": (lambda t: _mdan_batch(t, _mkdir(t / "empty")), "no images"),
    "non-image-in-folder-decode": (lambda t: _decode_folder(t, _folder(t / "in", "b.jpg")), "b.jpg: not an image"),
    "too-small-in-batch-mdan": (lambda t: _mdan_batch(t, _folder(t / "in", "b.png", lambda p: _png(p, 1, 1))),
                                "b.png: image is too small (1x1)"),
    "image-1x1-decode": (lambda t: _decode(t, _png(t / "one.png", 1, 1)), "too small"),
    "image-1x1-mdan": (lambda t: _mdan(t, "--content", str(_png(t / "one.png", 1, 1))), "too small"),
    "smaller-than-patch-mdan": (lambda t: _mdan(t, "--content", str(_png(t / "p.png", 24, 24))), "too small"),
    "smaller-than-patch-style": (lambda t: _mdan(t, "--style", str(_png(t / "s.png", 20, 20))), "too small"),
    "decompression-bomb": (lambda t: _decode(t, _bomb_png(t / "bomb.png")), "decompression-bomb"),
    # configs
    "yaml-syntax": (lambda t: _train(t, "name: x\ntrain: {batch: [1, 2\n"), "YAML does not parse"),
    "yaml-unknown-key": (lambda t: _train(t, "name: x\ntrain:\n  batchsize: 8\n"), "unknown config key 'train.batchsize'"),
    "yaml-wrong-type": (lambda t: _train(t, "train:\n  batch: sixteen\n"), "train.batch: expected an integer"),
    "yaml-impossible-value": (lambda t: _train(t, "train:\n  lr: -1\n"), "lr: must be > 0"),
    "yaml-not-a-mapping": (lambda t: _train(t, "- a\n- b\n"), "top level must be a mapping"),
    "yaml-non-string-key": (lambda t: _perceptual(t, "steps: 10\n1: 2\n"), "must be a string"),
    "yaml-perceptual-wrong-type": (lambda t: _perceptual(t, "steps: many\n"), "steps: expected an integer"),
    # checkpoints
    "checkpoint-corrupt-generator": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_yaml(t / "g.safetensors", "garbage" * 50))),
        "not a safetensors generator"),
    "checkpoint-corrupt-d": (
        lambda t: _mdan(t, "--d-init", str(_bytes(t / "d.pt", np.random.default_rng(0).bytes(4096)))), "not a valid mgan checkpoint"),
    "checkpoint-other-arch-generator": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_other_safetensors(t / "g.safetensors"))),
        "not an mgan generator"),
    "checkpoint-torch-as-generator": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_other_arch_pt(t / "g.pt"))),
        "not a safetensors generator"),
    "checkpoint-other-arch-d": (lambda t: _mdan(t, "--d-init", str(_other_arch_pt(t / "d.pt"))), "does not fit"),
    "checkpoint-pickle-runs-code-d": (
        lambda t: _mdan(t, "--d-init", str(_pickled(t / "evil.pt", t / "SENTINEL"))), "refused"),
    "checkpoint-torch-pickle-runs-code-d": (
        lambda t: _mdan(t, "--d-init", str(_torch_pickled(t / "evil.pt", t / "SENTINEL"))), "refused"),
    "checkpoint-pickle-runs-code-vgg": (
        lambda t: _mdan(t, "--vgg-weights", str(_torch_pickled(t / "vgg.bin", t / "SENTINEL"))),
        "cannot read VGG-19 weights from"),
    "checkpoint-pickle-runs-code-perceptual": (
        lambda t: (perceptual.main, ["stylize", "--checkpoint", str(_torch_pickled(t / "final.pt", t / "SENTINEL")),
                                     "--content", str(_png(t / "a.png")), "--out", str(t / "out.png")],
                   t / "out.png"), "refused"),
    # video
    "video-zero-bytes": (lambda t: _decode(t, _bytes(t / "clip.mp4", b""), out="out.mp4"), "cannot open video"),
    "video-no-frames-mp4": (lambda t: _decode(t, empty_video(t / "clip.mp4"), out="out.mp4"), "no video stream"),
    "video-no-frames-avi": (lambda t: _decode(t, empty_video(t / "clip.avi"), out="out.mp4"), "no frames"),
    # option values
    "option-negative-size-decode": (lambda t: _decode(t, _png(t / "a.png"), "--size=-32"), "--size"),
    "option-negative-size-mdan": (lambda t: _mdan(t, "--size=-32"), "size: must be a multiple of 8"),
    "option-negative-iterations": (lambda t: _mdan(t, "--iterations=-1"), "iterations: must be >= 0"),
    "option-bad-height": (lambda t: _mdan(t, "--height", "12"), "--height"),
    "option-negative-tile-memory": (lambda t: _decode(t, _png(t / "a.png"), "--tile-memory=-1"), "--tile-memory"),
    "option-noise-weight": (lambda t: _decode(t, _png(t / "a.png"), "--noise-weight", "1.5"), "--noise-weight"),
    "option-out-not-image": (lambda t: _decode(t, _png(t / "a.png"), out="out.txt"), "expected an image file"),
    "option-out-under-a-file": (lambda t: (*_decode(t, _png(t / "a.png"), out="old.png/x.png")[:2], t / "old.png"),
                                "cannot write"),
}


# ----------------------------------------------------------------------------- issue #15: nothing lost, nothing silent


def _release(path: Path, nan: bool = False, sd: dict | None = None, **config) -> Path:
    """A tiny generator file whose metadata config is ``GeneratorConfig`` with ``config`` over it
    (any JSON, valid or not), optionally with a NaN weight."""
    import json

    from safetensors.torch import save_file

    from mgan.generator import RELEASE_FORMAT, Generator, GeneratorConfig

    G = Generator(GeneratorConfig(channels=(16, 8, 8)))
    weights = {k: v.half().contiguous() for k, v in G.state_dict().items() if not k.endswith("num_batches_tracked")}
    if nan:
        weights["net.0.weight"][0, 0, 0, 0] = float("nan")
    meta = {"format": RELEASE_FORMAT, "config": json.dumps({"in_channels": 512, "channels": [16, 8, 8],
                                                             "encoder_layer": "relu4_1", "vgg_weights": "caffe",
                                                             "pooling": "max", **config})}
    save_file(sd if sd is not None else weights, str(path), metadata=meta)
    return path


def _fifo(path: Path) -> Path:
    """A named pipe. If mgan ever opened it (and blocked, waiting for a writer), a writer
    turns up after 10 s and closes at once, so a regression fails the test instead of hanging it."""
    import threading
    import time

    os.mkfifo(path)

    def unblock() -> None:
        end = time.monotonic() + 60
        time.sleep(10)
        while time.monotonic() < end:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while nobody reads
                return
            except OSError:
                time.sleep(0.2)

    threading.Thread(target=unblock, daemon=True).start()
    return path


def _video(path: Path, frames: int = 2, side: int = 32) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = side, side, "yuv420p"
        for i in range(frames):
            arr = np.full((side, side, 3), 40 * i, np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        c.mux(s.encode(None))
    return path


def _train_data(t: Path, bad: Callable[[Path], Path] | None = None) -> str:
    """A data folder (style, two training photos, one of them ``bad``) and a config naming it."""
    _png(_mkdir(t / "data") / "style.png", 64, 64)
    _png(_mkdir(t / "data" / "train") / "p.png", 64, 64)
    if bad is not None:
        bad(t / "data" / "train" / "q.jpg")
    return (f"name: x\ndata_root: {t / 'data'}\nstyle: style.png\nwarmup_photos: null\ntrain_photos: train\n"
            "sample_photos: null\n")


def _d_state(path: Path, **fields) -> Path:
    torch.save({"D": {"conv.weight": torch.zeros(4, 4, 3, 3)}, **fields}, path)
    return path


def _hardlink(t: Path) -> tuple:
    src = _png(t / "a.png")
    os.link(src, t / "b.png")
    return (*_decode(t, src, out="b.png")[:2], src)


def _symlink(t: Path) -> tuple:
    src = _png(t / "a.png")
    (t / "sub").mkdir()
    (t / "sub" / "b.png").symlink_to(src)
    return (*_decode(t, src, out="sub/b.png")[:2], src)


BOMB = "".join(f"{k}: &{k} [{', '.join([f'*{p}' for _ in range(10)] if p else ['x'] * 10)}]\n"
               for p, k in zip(["", *"abcdefgh"], "abcdefghi", strict=True))  # 10^9 values from 800 bytes

CASES.update({
    # an output never replaces an input (refused before any work)
    "out-is-input-decode": (lambda t: (*_decode(t, _png(t / "a.png"), out="a.png")[:2], t / "a.png"),
                            "is the input file (--input"),
    "out-is-input-folder-decode": (
        lambda t: (decode.main, ["--input", str(_folder(t / "in", "b.png", _png)), "--out", str(t / "in"),
                                 "--device", "cpu"], t / "in" / "a.png"), "is the input folder"),
    "out-hard-link-to-input-decode": (_hardlink, "is the input file"),
    "out-symlink-to-input-decode": (_symlink, "is the input file"),
    "out-is-content-dir-mdan": (
        lambda t: (mdan.main, [*MDAN_FAST, "--content-dir", str(_folder(t / "in", "b.png", _png)), "--out",
                               str(t / "in")], t / "in" / "a.png"), "is the input folder (--content-dir"),
    "out-is-style-mdan": (lambda t: (mdan.main, [*MDAN_FAST, "--style", str(_png(t / "s.png", 64, 64)), "--out",
                                                 str(t / "s.png")], t / "s.png"), "is the input file (--style"),
    "save-d-is-d-init-mdan": (lambda t: (*_mdan(t, "--d-init", str(t / "d.pt"), "--save-d", str(t / "d.pt"))[:2],
                                         t / "d.pt"), "--save-d"),
    "save-noise-is-out-decode": (
        lambda t: (decode.main, ["--noise", "perlin", "--size", "32", "--out", str(t / "o.png"), "--save-noise",
                                 str(t / "o.png"), "--device", "cpu", "--quiet"], t / "o.png"), "both name"),
    "out-is-content-gatys": (
        lambda t: (__import__("mgan.gatys", fromlist=["main"]).main,
                   ["--style", str(_png(t / "s.png")), "--content", str(_png(t / "c.png")), "--out", str(t / "c.png"),
                    "--device", "cpu"], t / "c.png"),
        "is the input file (--content"),
    "out-is-content-cnnmrf": (
        lambda t: (__import__("mgan.cnnmrf", fromlist=["main"]).main,
                   ["--style", str(_png(t / "s.png")), "--content", str(_png(t / "c.png")), "--out", str(t / "c.png"),
                    "--device", "cpu"], t / "c.png"),
        "is the input file (--content"),
    # no hangs: YAML aliases, pipes; no allocation from a file's claims
    "yaml-alias-bomb": (lambda t: _train(t, BOMB), "expands to more than"),
    "yaml-alias-bomb-override": (
        lambda t: (train.main, [str(_yaml(t / "exp.yaml", "name: x\n")), "--dry-run", "--outdir", str(t / "runs"),
                                "--set", "name={" + ", ".join(BOMB.splitlines()) + "}"],
                   t / "runs" / "kept.txt"), "expands to more than"),
    "yaml-recursive-alias": (lambda t: _train(t, "a: &a [*a]\n"), "refers to itself"),
    "yaml-duplicate-key": (lambda t: _train(t, "name: x\ntrain:\n  lr: 0.1\n  lr: 0.2\n"), "duplicate key 'lr'"),
    "yaml-nested-too-deep": (lambda t: _train(t, "x: " + "[" * 3000 + "]" * 3000 + "\n"), "nested too deeply"),
    "fifo-input-decode": (lambda t: _decode(t, _fifo(t / "pipe.png")), "not a regular file"),
    "fifo-in-folder-decode": (lambda t: _decode_folder(t, _folder(t / "in", "b.png", _fifo)), "b.png: not a regular file"),
    "fifo-config-train": (lambda t: (train.main, [str(_fifo(t / "exp.yaml")), "--dry-run", "--outdir", str(t / "runs")],
                                     t / "runs" / "kept.txt"), "not a regular file"),
    "fifo-d-init-mdan": (lambda t: _mdan(t, "--d-init", str(_fifo(t / "d.pt"))), "not a regular file"),
    "fifo-model-decode": (lambda t: _decode(t, _png(t / "a.png"), "--model", str(_fifo(t / "g.safetensors"))),
                          "not a regular file"),
    "fifo-video-decode": (lambda t: _decode(t, _fifo(t / "clip.mp4"), out="out.mp4"), "not a regular file"),
    "generator-huge-channels": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_release(t / "g.safetensors", channels=[10**9, 8, 8]))),
        "channels: must be 1 to 4 widths"),
    "generator-channels-beyond-its-weights": (
        lambda t: _decode(t, _png(t / "a.png"), "--model",
                          str(_release(t / "g.safetensors", channels=[4096, 4096, 4096]))), "the config makes it"),
    # one line, not a traceback
    "generator-bad-encoder-layer": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_release(t / "g.safetensors", encoder_layer="relu9_9"))),
        "encoder_layer"),
    "generator-bad-pooling": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_release(t / "g.safetensors", pooling="median"))),
        "pooling"),
    "generator-empty-channels": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_release(t / "g.safetensors", channels=[]))),
        "channels"),
    "generator-channels-wrong-type": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_release(t / "g.safetensors", channels="wide"))),
        "channels: expected a list"),
    "generator-in-channels-mismatch": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_release(t / "g.safetensors", in_channels=256))),
        "in_channels"),
    "option-size-huge-decode": (lambda t: _decode(t, _png(t / "a.png"), "--size", "100000"), "above the limit"),
    "option-size-huge-noise": (
        lambda t: (decode.main, ["--noise", "perlin", "--size", "100000", "--out", str(t / "o.png"), "--device", "cpu"],
                   t / "o.png"), "--size: the output would be 100000x100000"),
    "option-size-huge-video": (lambda t: _decode(t, _video(t / "clip.avi"), "--size", "100000", out="out.mp4"),
                               "clip.avi: the output would be"),
    "option-tile-memory-nan": (lambda t: _decode(t, _png(t / "a.png"), "--tile-memory", "nan"),
                               "--tile-memory: must be a finite number"),
    "option-lr-nan-mdan": (lambda t: _mdan(t, "--lr", "nan"), "--lr: must be a finite number"),
    "option-tv-weight-inf-mdan": (lambda t: _mdan(t, "--tv-weight", "inf"), "--tv-weight: must be a finite number"),
    "option-style-size-huge-mdan": (lambda t: _mdan(t, "--style-size", "20000"), "--style-size"),
    "option-content-weight-nan-gatys": (
        lambda t: (__import__("mgan.gatys", fromlist=["main"]).main,
                   ["--style", str(_png(t / "s.png")), "--content-weight", "nan", "--out", str(t / "o.png"),
                    "--device", "cpu"], t / "o.png"),
        "--content-weight: must be a finite number"),
    "yaml-lr-nan": (lambda t: _train(t, "train:\n  lr: .nan\n"), "train.lr: must be a finite number"),
    "yaml-weight-inf": (lambda t: _train(t, "mdan:\n  tv_weight: .inf\n"), "mdan.tv_weight: must be a finite"),
    "yaml-float-overflow": (lambda t: _train(t, "train:\n  lr: 1.0e+400\n"), "train.lr: must be a finite"),
    "override-lr-nan": (
        lambda t: (train.main, [str(_yaml(t / "exp.yaml", "name: x\n")), "--dry-run", "--outdir", str(t / "runs"),
                                "--set", "train.lr=.nan"], t / "runs" / "kept.txt"), "train.lr: must be a finite"),
    "yaml-perceptual-nan": (lambda t: _perceptual(t, "content_weight: .nan\n"), "must be a finite number"),
    "dry-run-non-image-among-photos-train": (lambda t: _train(t, _train_data(t, lambda p: _yaml(p, "no picture\n"))),
                                             "q.jpg: not an image"),
    "dry-run-tiny-photo-train": (lambda t: _train(t, _train_data(t, lambda p: _png(p, 4, 4))), "q.jpg: image is too small"),
    "d-init-wrong-field-type": (lambda t: _mdan(t, "--d-init", str(_d_state(t / "d.pt", images_done="many"))),
                                "field 'images_done' must be int"),
    "d-init-weights-not-a-mapping": (lambda t: _mdan(t, "--d-init", str(_d_state(t / "d.pt", D=[1, 2]))), "field 'D'"),
    "d-init-done-not-names": (lambda t: _mdan(t, "--d-init", str(_d_state(t / "d.pt", done=[1, 2]))), "field 'done'"),
    # NaN never becomes a black image
    "generator-nan-weights": (
        lambda t: _decode(t, _png(t / "a.png"), "--model", str(_release(t / "g.safetensors", nan=True))),
        "holds NaN or infinite values"),
    "d-init-nan-weights": (
        lambda t: _mdan(t, "--d-init", str(_d_state(t / "d.pt", D={"conv.weight": torch.full((4, 4, 3, 3), float("nan"))}))),
        "holds NaN or infinite values"),
    "float-tiff-nan-pixels": (
        lambda t: _decode(t, _tiff(t / "nan.tif", np.full((32, 32), np.nan, np.float32))), "NaN or infinite pixel"),
    # late failures become early ones, naming the file
    "undecodable-size-in-folder-decode": (
        lambda t: (decode.main, ["--input", str(_folder(t / "in", "b.png", lambda p: _png(p, 400, 12))), "--out",
                                 str(t / "outs"), "--size", "100", "--device", "cpu"], t / "outs" / "a.png"),
        "b.png: the output would be 100x3"),
    "untileable-size-in-folder-decode": (
        lambda t: (decode.main, ["--input", str(_folder(t / "in", "b.png", lambda p: _png(p, 36, 36))), "--out",
                                 str(t / "outs"), "--tileable", "--device", "cpu"], t / "outs" / "a.png"),
        "b.png: --tileable needs sides that are multiples of 8"),
    "save-d-is-a-folder-mdan": (lambda t: _mdan(t, "--save-d", str(_mkdir(t / "Ds"))), "--save-d"),
    "out-is-a-folder-mdan": (lambda t: (mdan.main, [*MDAN_FAST, "--out", str(_mkdir(t / "o.png"))], t / "kept.png"),
                             "is a folder"),
})


def _tiff(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_one_error_line(case, tmp_path, capsys):
    build, message = CASES[case]
    main, argv, keep = build(tmp_path)
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_bytes(PRECIOUS)  # an earlier run's output where this run would write
    before = sorted(p.name for p in keep.parent.iterdir())
    capsys.readouterr()

    status = main(argv)

    out, err = capsys.readouterr()
    assert status != 0, out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert keep.read_bytes() == PRECIOUS  # nothing already written is lost ...
    assert sorted(p.name for p in keep.parent.iterdir()) == before  # ... and no partial or temp file is left
    assert not (tmp_path / "SENTINEL").exists(), "a pickled command ran"


def test_raising_the_pixel_limit_passes_the_guard(tmp_path, capsys):
    """--max-pixels lets a declared 20000x20000 image past the guard (it then fails to decode:
    the file really holds 8x8 pixels), and the limit is back to the default afterwards."""
    bomb = _bomb_png(tmp_path / "bomb.png")
    argv = ["--input", str(bomb), "--out", str(tmp_path / "o.png"), "--device", "cpu", "--quiet"]
    assert decode.main([*argv, "--max-pixels", str(20000 * 20000)]) == 2
    err = capsys.readouterr().err
    assert "decompression-bomb" not in err and "cannot decode image" in err
    assert decode.main(argv) == 2
    assert "decompression-bomb" in capsys.readouterr().err
    io.set_max_pixels(1000)  # lowering it works too, and None restores the default
    try:
        with pytest.raises(io.InputError, match="decompression-bomb"):
            io.load_image(_png(tmp_path / "a.png", 64, 64))
    finally:
        io.set_max_pixels(None)
    assert io.load_image(tmp_path / "a.png").shape == (1, 3, 64, 64)


# ----------------------------------------------------------------------------- write failures


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [(errno.ENOSPC, 1, "disk full while writing"), (errno.EDQUOT, 1, "disk full while writing"),
     (errno.EACCES, 2, "cannot write"), (errno.EROFS, 2, "cannot write")],
    ids=["ENOSPC", "EDQUOT", "EACCES", "EROFS"],
)
def test_write_failure_is_one_line(code, status, message, tmp_path, capsys, monkeypatch):
    """A disk that fills up (or a folder that turns read-only) while the output is written:
    one line naming the output file, the old output kept, no temp file left."""
    out = tmp_path / "out.png"
    out.write_bytes(PRECIOUS)

    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io.os, "fsync", fail)
    assert decode.main(["--input", str(_png(tmp_path / "a.png")), "--out", str(out), "--device", "cpu",
                        "--quiet"]) == status
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"error: {message} {out}: {os.strerror(code)}"]
    assert out.read_bytes() == PRECIOUS and sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out.png"]


def test_cli_run_maps_exceptions(capsys):
    def raise_(exc: BaseException) -> Callable[[], int]:
        def fn() -> int:
            raise exc

        return fn

    assert cli.run(lambda: 0) == 0
    assert cli.run(raise_(io.InputError("bad\nsecond line"))) == 2
    assert capsys.readouterr().err == "error: bad\n"
    assert cli.run(raise_(FloatingPointError("loss is nan at step 3"))) == 1
    assert cli.run(raise_(KeyboardInterrupt()), interrupted="stopped; kept") == 130
    assert capsys.readouterr().err == "error: loss is nan at step 3\nstopped; kept\n"
    with pytest.raises(OSError):  # other OS errors are bugs and keep their traceback
        cli.run(raise_(OSError(errno.EIO, "I/O error")))


# ----------------------------------------------------------------------------- accepted inputs


def _gray16(path: Path) -> tuple[Path, np.ndarray]:
    arr = np.full((32, 32), 65535, np.uint16)
    arr[16:] = 32768
    Image.fromarray(arr).save(path)
    want = np.full((32, 32, 3), 255, np.uint8)
    want[16:] = 128
    return path, want


def _gray(path: Path) -> tuple[Path, np.ndarray]:
    arr = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    Image.fromarray(arr, "L").save(path)
    return path, np.repeat(arr[..., None], 3, axis=2)


def _cmyk(path: Path) -> tuple[Path, np.ndarray]:
    want = np.zeros((32, 32, 3), np.uint8)
    want[:, :16] = (200, 40, 30)
    want[:, 16:] = (30, 60, 190)
    Image.fromarray(want).convert("CMYK").save(path, quality=100)
    return path, want


def _palette(path: Path) -> tuple[Path, np.ndarray]:
    want = np.zeros((32, 32, 3), np.uint8)
    want[:16] = (250, 10, 10)
    want[16:] = (10, 200, 10)
    Image.fromarray(want).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    return path, want


def _rgba(path: Path) -> tuple[Path, np.ndarray]:
    arr = np.zeros((32, 32, 4), np.uint8)  # left half fully transparent black, right half opaque blue
    arr[:, 16:] = (0, 0, 255, 255)
    Image.fromarray(arr, "RGBA").save(path)
    want = np.full((32, 32, 3), 255, np.uint8)  # transparent -> white
    want[:, 16:] = (0, 0, 255)
    return path, want


@pytest.mark.parametrize(
    ("name", "build", "mode", "tolerance"),
    [("gray16.png", _gray16, "I;16", 0), ("gray.png", _gray, "L", 0), ("cmyk.jpg", _cmyk, "CMYK", 8),
     ("palette.png", _palette, "P", 0), ("rgba.png", _rgba, "RGBA", 0)],
    ids=["16-bit-png", "grayscale", "cmyk-jpeg", "palette-png", "rgba-png"],
)
def test_other_modes_are_converted(name, build, mode, tolerance, tmp_path, capsys):
    """``mdan --iterations 0`` writes its guidance photo back unchanged: the converted pixels."""
    src, want = build(tmp_path / name)
    with Image.open(src) as im:
        assert im.mode == mode
    out = tmp_path / "out.png"
    assert mdan.main([*MDAN_FAST, "--content", str(src), "--out", str(out)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {src}: converted {mode} to RGB" + {"I;16": " (rescaled to 8 bits)",
                                                                 "RGBA": " (alpha composited on white)"}.get(mode, "")]
    with Image.open(out) as im:
        got = np.asarray(im.convert("RGB"), dtype=int)
    assert got.shape == want.shape
    assert np.abs(got - want.astype(int)).max() <= tolerance


def test_exif_rotated_photo_comes_out_upright(tmp_path, capsys):
    """A 64x32 JPEG (top red, bottom blue) tagged Orientation=6 (rotate 90 degrees clockwise to
    view) is a 32x64 photo whose right half is red; the output is upright too."""
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:16] = (255, 0, 0)
    arr[16:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    src = tmp_path / "rotated.jpg"
    img.save(src, exif=exif, quality=95)
    out = tmp_path / "out.png"
    assert mdan.main([*MDAN_FAST, "--size", "64", "--content", str(src), "--out", str(out)]) == 0
    with Image.open(out) as im:
        got = np.asarray(im.convert("RGB"), dtype=int)
    assert got.shape == (64, 32, 3)
    assert np.abs(got[:, 20:] - (255, 0, 0)).max() < 40 and np.abs(got[:, :12] - (0, 0, 255)).max() < 40
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith(("note:", "error:"))]
