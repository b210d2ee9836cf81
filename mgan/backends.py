"""Decoding through the fastest backend: torch, or the exported network in OpenVINO or ONNX Runtime.

Why (issue #11): on a 2-core EPYC without native bf16, VGG-19 to relu4_1 at 512^2 took
1.80 s in torch fp32, 1.84 s in ONNX Runtime and 0.90 s in OpenVINO f32 (one run; a
noisier one 2.04 / 2.28 / 1.56 s). Which backend wins depends on the CPU (oneDNN bf16 in
torch is hard to beat where bf16 is native), so ``auto`` measures rather than guesses.

What runs: the function :class:`mgan.decode.Decoder` calls per tile, RGB ``[1, 3, h, w]``
in ``[0, 1]`` -> VGG-19 preprocessing -> relu4_1 -> G (BatchNorm folded) -> ``[1, 3, h, w]``
float32 in ``[0, 1]``. Only that function is swapped: the halo tiling around it is
unchanged, so tiled, tileable and video decodes stay exact for every backend (each
backend's pixels are torch fp32's up to float rounding: within 1/255, tested).

* Export: once per model, fp32, to ONNX with the tile's height and width as dynamic axes
  (the TorchScript exporter, ``dynamo=False``: the dynamo exporter needs ``onnxscript``).
  One file serves every tile shape; exporting per shape would repeat a 5-15 s trace for
  each image size of a folder.
* Per tile shape, each backend fixes the shape before compiling (OpenVINO ``reshape``,
  ONNX Runtime free-dimension overrides), so its kernels are specialised as for a static
  export. OpenVINO compiles this network in under a second, so compiled blobs (~weights
  size per shape) are not written to disk; the last :data:`MAX_SHAPES` stay in memory
  (a video or a folder of one size compiles once).
* Precision: ONNX Runtime computes in fp32 (its CPU provider has no bf16 convolution).
  OpenVINO uses its own bf16 inference hint where the decoder's precision is bf16 (the
  ``--precision auto`` choice of :mod:`mgan.precision`: native bf16) and OpenVINO's CPU
  plugin reports BF16; f32 otherwise (it would pick bf16 by itself on such CPUs, so the
  hint is always set).

Cache, under the user's cache folder (``$XDG_CACHE_HOME/mgan/decode``, default
``~/.cache/mgan/decode``, or ``$MGAN_CACHE_DIR/decode``; never inside the package)::

    <weights hash>-torch<version>-opset<N>/decode.onnx   one exported network per model
    choices.json                                          auto's measurements

``auto`` (the CLI's default): torch when neither package is installed (``pip install
'mgan[fast]'``), when decoding on a GPU, with ``--compile``, or for tiles under
:data:`AUTO_MIN_SIDE`\\ ^2 px (at 256^2 torch decodes in ~0.3 s on 2 cores; exporting
takes 5-15 s once per model and compiling ~0.5 s per run: they cannot pay off). Otherwise
each installed backend decodes one random tile of the size class (256^2 or 512^2) once
to warm up and twice timed; the fastest wins, torch unless another is at least
:data:`AUTO_MARGIN` faster (the noise of a shared machine, and the compile it saves).
The result is cached per model, size class, precision, CPU kind, thread count and
backend versions, so it is measured once (~10-20 s at 512^2 on 2 cores).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io as _io
import json
import os
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from mgan import io
from mgan import precision as prec
from mgan.errors import InputError

CHOICES = ("auto", "torch", "openvino", "onnxruntime")
FAST = ("openvino", "onnxruntime")  # the optional backends, in the order auto measures them
PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
HELP = ("auto (default): the fastest here, measured once per model and tile size and cached; torch when "
        "openvino / onnxruntime are not installed (pip install 'mgan[fast]'); or torch, openvino, onnxruntime")
OPSET = 17
AUTO_MIN_SIDE = 256  # px: smaller tiles always decode in torch under auto (see the module docstring)
AUTO_MARGIN = 0.10  # another backend must be this much faster than torch for auto to pick it
MAX_SHAPES = 4  # compiled tile shapes kept in memory per decoder

Runner = Callable[[Tensor], Tensor]  # [1, 3, h, w] float32 in [0, 1] -> [1, 3, h, w] float32 in [0, 1]


def installed(name: str) -> bool:
    """Whether the optional backend ``name`` can be imported (``torch`` always can)."""
    if name == "torch":
        return True
    return importlib.util.find_spec(PACKAGES[name]) is not None


def cache_root() -> Path:
    """``$MGAN_CACHE_DIR/decode`` if set (the tests' private folder), else ``$XDG_CACHE_HOME/mgan/decode``
    (default ``~/.cache/mgan/decode``)."""
    if os.environ.get("MGAN_CACHE_DIR"):
        return Path(os.environ["MGAN_CACHE_DIR"]) / "decode"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mgan" / "decode"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def weights_hash(net: nn.Module) -> str:
    """SHA-256 (16 hex digits) of ``net``'s structure, parameters and buffers (preprocessing
    constants included): two decoders share an export only if they compute the same function."""
    h = hashlib.sha256(repr(net).encode())
    for name, t in [*net.named_parameters(), *net.named_buffers()]:
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def export_onnx(net: nn.Module, path: Path) -> Path:
    """Write ``net`` (fp32, CPU, eval) to ``path`` as ONNX with dynamic height and width, atomically.

    Input ``image`` ``[1, 3, height, width]``, output ``decoded`` ``[1, 3, height, width]``.
    """
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    buf = _io.BytesIO()
    axes = {2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # only during this call: the TorchScript exporter's deprecation notices (attributed to
        # this line), and the tracer's note on the encoder's input-shape check (a Python
        # bool, true for every tile, rightly not traced)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # torch's annotation lists only paths for f; the TorchScript exporter writes to a file object too
        torch.onnx.export(net, (x,), buf, input_names=["image"], output_names=["decoded"], opset_version=OPSET,  # type: ignore[arg-type]
                          dynamic_axes={"image": axes, "decoded": axes}, dynamo=False)
    with io.atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def openvino_hint(precision: str, capabilities: list[str] | None = None) -> tuple[str, str]:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for the decoder's resolved ``precision`` and why.

    bf16 (or bf16-autocast) -> ``"bf16"`` where the CPU plugin reports ``BF16`` (native
    bf16 units), else ``"f32"``; fp32 -> ``"f32"``.
    """
    if precision not in ("bf16", "bf16-autocast"):
        return "f32", "f32"
    if capabilities is None:
        import openvino as ov  # noqa: PLC0415

        capabilities = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if "BF16" in capabilities:
        return "bf16", "bf16 inference hint, native here"
    return "f32", "f32, OpenVINO's CPU plugin has no bf16 here"


def _openvino_runner(onnx_path: Path, shape: tuple[int, ...], hint: str) -> Runner:
    import openvino as ov  # noqa: PLC0415

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    model.reshape(list(shape))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                 "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    request = compiled.create_infer_request()

    def run(x: Tensor) -> Tensor:
        out = request.infer({0: x.detach().to("cpu", torch.float32).contiguous().numpy()})
        return torch.from_numpy(out[0])  # infer() copies the output by default

    return run


def _onnxruntime_runner(onnx_path: Path, shape: tuple[int, ...]) -> Runner:
    import onnxruntime as ort  # noqa: PLC0415

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: no notes on stderr between progress bars
    opts.add_free_dimension_override_by_name("height", shape[2])
    opts.add_free_dimension_override_by_name("width", shape[3])
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(sess.run(None, {"image": x.detach().to("cpu", torch.float32).contiguous().numpy()})[0])

    return run


def time_runner(run: Runner, shape: tuple[int, ...], memory_format: torch.memory_format, repeat: int = 2) -> float:
    """Best of ``repeat`` timed calls of ``run`` on one random tile of ``shape``, after one warm-up call."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=memory_format)
    with torch.inference_mode():
        run(x)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            run(x)
            best = min(best, time.perf_counter() - t0)
    return best


def size_class(shape: tuple[int, ...]) -> int | None:
    """Side of the square tile auto measures for a tile ``shape``, or ``None``: below
    :data:`AUTO_MIN_SIDE`\\ ^2 px, torch without measuring."""
    area = shape[-2] * shape[-1]
    if area < AUTO_MIN_SIDE**2:
        return None
    return 256 if area < 384**2 else 512


class Dispatch:
    """The per-tile function of a :class:`~mgan.decode.Decoder` whose backend is not plain torch.

    Args:
        backend: ``"auto"``, ``"openvino"`` or ``"onnxruntime"`` (:data:`CHOICES`).
        torch_run: the decoder's torch pipeline (its precision, memory format).
        export_net: builds the fp32 CPU network to export (called at most once, lazily).
        precision: the decoder's resolved precision (``"fp32"``, ``"bf16"``, ...).
        memory_format: of the tiles the decoder passes (for auto's torch measurement).
        log: where the ``backend: ...`` line goes (``None``: nowhere); set by the CLI.

    Calling it with a tile ``[1, 3, h, w]`` runs the backend chosen for that shape.
    """

    def __init__(self, backend: str, torch_run: Runner, export_net: Callable[[], nn.Module], precision: str,
                 memory_format: torch.memory_format = torch.contiguous_format,
                 log: Callable[[str], None] | None = None) -> None:
        self.backend, self.torch_run, self._export_net = backend, torch_run, export_net
        self.precision, self.memory_format, self.log = precision, memory_format, log
        self._net: nn.Module | None = None
        self._hash: str | None = None
        self._runners: OrderedDict[tuple[int, ...], tuple[str, Runner]] = OrderedDict()
        self._choices: dict[int | None, tuple[str, str]] = {}  # size class -> (backend, why)
        self._said: str | None = None
        self.chosen: str | None = None  # the backend of the last tile shape (for messages and tests)

    # -- the exported network

    def net(self) -> nn.Module:
        if self._net is None:
            with torch.inference_mode(False):  # built on the first tile, inside decode()'s inference mode
                self._net = self._export_net().float().eval().requires_grad_(False)
        return self._net

    def key(self) -> str:
        if self._hash is None:
            self._hash = weights_hash(self.net())
        return self._hash

    def onnx_path(self) -> Path:
        """The exported network, written on first use (``InputError`` if the cache is not writable)."""
        torch_version = torch.__version__.split("+")[0]
        path = cache_root() / f"{self.key()}-torch{torch_version}-opset{OPSET}" / "decode.onnx"
        if not path.is_file():
            if self.log is not None:
                self.log(f"backend: exporting the decode network to {path} (once per model)")
            try:
                export_onnx(self.net(), path)
            except OSError as exc:
                raise InputError(f"cannot write the backend cache {path.parent} ({exc.strerror or exc}); "
                                    "set MGAN_CACHE_DIR to a writable folder or use --backend torch") from None
        return path

    def _make(self, backend: str, shape: tuple[int, ...]) -> tuple[Runner, str]:
        """``(runner, how)`` of ``backend`` for tiles of ``shape``; ``how`` names its precision."""
        if backend == "torch":
            return self.torch_run, self.precision
        if backend == "openvino":
            hint, why = openvino_hint(self.precision)
            return _openvino_runner(self.onnx_path(), shape, hint), why
        why = "fp32" + (", ONNX Runtime's CPU provider has no bf16 convolution" if self.precision != "fp32" else "")
        return _onnxruntime_runner(self.onnx_path(), shape), why

    # -- auto

    def _measure_key(self, side: int) -> str:
        versions = ",".join(f"{p}{_version(p)}" for p in ("torch", *FAST) if installed(p))
        return (f"{self.key()}|{side}x{side}|{self.precision}|{prec.cpu_kind()}|threads{torch.get_num_threads()}"
                f"|{versions}")

    def _auto(self, shape: tuple[int, ...]) -> tuple[str, str]:
        """``(backend, why)`` for tiles of ``shape`` under auto: a rule, a cached measurement, or a new one."""
        candidates = [b for b in FAST if installed(b)]
        side = size_class(shape)
        if side is None:
            return "torch", f"auto: tiles under {AUTO_MIN_SIDE}x{AUTO_MIN_SIDE} px gain less than an export costs"
        if side in self._choices:
            return self._choices[side]
        store = cache_root() / "choices.json"
        key = self._measure_key(side)
        seconds = _read_json(store).get(key, {}).get("seconds")
        fresh = seconds is None
        if fresh:
            if self.log is not None:
                self.log(f"backend auto: timing torch, {', '.join(candidates)} once on {side}x{side} tiles "
                         f"(cached in {store})")
            probe = (shape[0], shape[1], side, side)
            seconds = {"torch": time_runner(self.torch_run, probe, self.memory_format)}
            for b in candidates:
                seconds[b] = time_runner(self._make(b, probe)[0], probe, self.memory_format)
            try:
                with io.atomic_write(store, "w") as f:  # merged with what other runs measured meanwhile
                    json.dump({**_read_json(store), key: {"seconds": seconds, "when": time.time()}}, f, indent=1)
            except OSError:
                pass  # an unwritable cache only means measuring again next time
        best = min(seconds, key=seconds.get)
        if best != "torch" and seconds[best] > (1 - AUTO_MARGIN) * seconds["torch"]:
            best = "torch"
        times = ", ".join(f"{b} {s:.2f} s" for b, s in sorted(seconds.items(), key=lambda kv: kv[1]))
        why = f"auto: {'measured' if fresh else 'measured earlier'} on {side}x{side} tiles: {times}"
        self._choices[side] = (best, why)
        return best, why

    # -- per tile

    def __call__(self, tile: Tensor) -> Tensor:
        shape = tuple(tile.shape)
        if shape not in self._runners:
            backend, why = self._auto(shape) if self.backend == "auto" else (self.backend, "requested")
            run, how = self._make(backend, shape)
            self._net = None  # hashed and exported by now: its ~50 MB of fp32 weights are not needed again
            self._runners[shape] = (backend, run)
            while len(self._runners) > MAX_SHAPES:
                self._runners.popitem(last=False)
            line = f"backend: {backend} {how} ({why})"
            if self.log is not None and line.split(" (")[0] != self._said:
                self.log(line)
                self._said = line.split(" (")[0]
        else:
            self._runners.move_to_end(shape)
        backend, run = self._runners[shape]
        self.chosen = backend
        return run(tile)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check(backend: str, device: torch.device, compile: bool = False) -> tuple[str, str]:
    """Validate a backend request for a decoder on ``device``: ``(backend to set up, why)``.

    ``"torch"`` stays torch; ``"auto"`` becomes ``"torch"`` where no other backend could
    run (GPU, ``compile``, nothing installed) and stays ``"auto"`` otherwise. An explicit
    ``"openvino"`` / ``"onnxruntime"`` that cannot run raises :class:`mgan.errors.InputError`
    (one line, exit 2 in the CLIs).
    """
    if backend not in CHOICES:
        raise InputError(f"backend must be one of {', '.join(CHOICES)}, got {backend!r}")
    if backend == "torch":
        return backend, "requested"
    if backend == "auto":
        if device.type != "cpu":
            return "torch", f"auto: openvino and onnxruntime run on the CPU, decoding on {device}"
        if compile:
            return "torch", "auto: --compile is torch.compile"
        if not any(installed(b) for b in FAST):
            return "torch", "auto: openvino and onnxruntime are not installed (pip install 'mgan[fast]')"
        return backend, "auto"
    if not installed(backend):
        raise InputError(f"--backend {backend} needs the {PACKAGES[backend]} package: "
                            f"pip install 'mgan[fast]' (or {PACKAGES[backend]}), or use --backend torch")
    if device.type != "cpu":
        raise InputError(f"--backend {backend} runs on the CPU; got --device {device} (use --backend torch)")
    if compile:
        raise InputError(f"--compile is torch.compile: it applies to --backend torch, not {backend}")
    return backend, "requested"


def stderr_log(line: str) -> None:
    """The CLI's :attr:`Dispatch.log`: one line on stderr."""
    print(line, file=sys.stderr, flush=True)
