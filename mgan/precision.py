"""Which float precision to compute in: ``"auto"`` picks bf16 only where the hardware runs it natively.

bf16 halves memory traffic and, on hardware with bf16 dot-product units, doubles
(AVX-512-bf16) or multiplies (AMX, tensor cores) convolution throughput. Where there
are no such units oneDNN *emulates* bf16 by converting to fp32 and back: on a 2-core
AVX2-only EPYC, VGG-19 to relu4_1 at 512^2 took 9.4 s in bf16 against 1.1 s in fp32,
and relu5_1 forward + backward at 384^2 88 s against 2.0 s (issue #11). So the default
of every engine and CLI is ``"auto"``:

- a CUDA GPU with bf16 (Ampere and later; ``torch.cuda.is_bf16_supported()``): bf16;
- a CPU where oneDNN reports bf16 (AVX-512-bf16, AMX;
  ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``): bf16;
- anything else (AVX2-only CPU, older GPU, MPS): fp32.

Explicit ``"fp32"`` and ``"bf16"`` are always honoured.

To see what an AVX2-only machine sees, on any x86 machine: ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` (torch's and oneDNN's kernels limited to AVX2: other reduction
orders, bf16 emulated, and the oneDNN probe then says "no"). ``MGAN_FORCE_NO_BF16=1`` only
makes :func:`native_bf16` answer "no" (the choice, not the kernels).
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

import torch

from mgan.errors import ConfigError

CHOICES = ("auto", "fp32", "bf16")
FORCE_NO_BF16 = "MGAN_FORCE_NO_BF16"
HELP = "auto (default): bf16 where the hardware runs it natively, else fp32; or fp32, bf16"


def _cpu_flag(name: str) -> bool:
    """One of torch's private CPU feature probes (``torch.cpu._is_<name>_supported``); False if absent."""
    probe = getattr(torch.cpu, f"_is_{name}_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def cpu_kind() -> str:
    """The CPU kernels in use in one word: ``"AMX"``, ``"AVX-512-bf16"``, ``"AVX-512"``, ``"AVX2"``, ...

    ``torch.backends.cpu.get_cpu_capability()`` (ATen's kernels) says ``"AVX512"`` for AMX
    and AVX-512-bf16 machines alike, so the bf16 units are named only when oneDNN will use
    them too: with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` any x86 machine
    reports (and computes as) ``"AVX2"``.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX512":
        return capability
    if bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        if _cpu_flag("amx_tile"):
            return "AMX"
        if _cpu_flag("avx512_bf16"):
            return "AVX-512-bf16"
    return "AVX-512"


def _probe(device: torch.device) -> bool:
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        # torch.cuda.is_bf16_supported(including_emulation=False) for this device, not the
        # current one: bf16 tensor cores from compute capability 8 (Ampere); ROCm GPUs have
        # bf16. Older GPUs "support" bf16 only through fp32 kernels.
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.version.hip is not None or torch.cuda.get_device_capability(index)[0] >= 8
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def native_bf16(device: torch.device | str) -> bool:
    """True when ``device`` computes bf16 in hardware (not emulated through fp32).

    ``MGAN_FORCE_NO_BF16=1`` forces False (simulates an AVX2-only CPU).
    Tests monkeypatch this function to cover each kind of machine.
    """
    if os.environ.get(FORCE_NO_BF16, "") not in ("", "0"):
        return False
    return _probe(torch.device(device))


def _where(device: torch.device) -> str:
    if device.type == "cpu":
        return f"this CPU ({cpu_kind()})"
    if device.type == "cuda" and torch.cuda.is_available():
        return f"this GPU ({torch.cuda.get_device_name(device)})"
    return f"device {device}"


def resolve_precision(name: str, device: torch.device | str) -> tuple[str, str]:
    """``"auto"`` / ``"fp32"`` / ``"bf16"`` -> the precision to compute in and why.

    Args:
        name: the requested precision.
        device: where the work runs.

    Returns:
        ``(precision, reason)``: ``precision`` is ``"bf16"`` or ``"fp32"``; ``reason`` is
        one short clause for the log line (see :func:`describe`).

    Raises:
        ValueError: ``name`` is not one of :data:`CHOICES`.
    """
    if name not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, got {name!r}")
    device = torch.device(device)
    native = native_bf16(device)
    forced = " (MGAN_FORCE_NO_BF16 is set)" if os.environ.get(FORCE_NO_BF16, "") not in ("", "0") else ""
    if name == "fp32":
        return "fp32", "requested"
    if name == "bf16":
        if native:
            return "bf16", "requested"
        return "bf16", f"requested; {_where(device)} has no native bf16{forced}: emulated, 4-44x slower than fp32"
    if native:
        return "bf16", f"auto: {_where(device)} has native bf16"
    return "fp32", f"auto: {_where(device)} has no native bf16{forced}; bf16 would be emulated and slow"


def resolve(name: str, device: torch.device | str) -> str:
    """Only the precision of :func:`resolve_precision`: ``"bf16"`` or ``"fp32"``."""
    return resolve_precision(name, device)[0]


def describe(name: str, device: torch.device | str) -> str:
    """The log line: ``precision: fp32 (auto: this CPU (AVX2) has no native bf16; ...)``."""
    precision, reason = resolve_precision(name, device)
    return f"precision: {precision} ({reason})"


def announce(name: str, device: torch.device | str, file: TextIO | None = None) -> str:
    """Print :func:`describe`'s line to stderr (once per CLI run) and return the resolved precision."""
    precision, reason = resolve_precision(name, device)
    print(f"precision: {precision} ({reason})", file=file or sys.stderr)
    return precision


def check(name: str, key: str = "precision") -> None:
    """Config validation: raise :class:`~mgan.errors.ConfigError` naming ``key`` unless ``name`` is a choice."""
    if name not in CHOICES:
        raise ConfigError(f"{key}: must be 'auto', 'fp32' or 'bf16', got {name!r}")


def summary(device: torch.device | str = "cpu") -> str:
    """``CPU: AVX-512-bf16 (torch AVX512, 2 threads), native bf16: yes`` and the auto choice on a second line."""
    device = torch.device(device)
    cpu = (f"CPU: {cpu_kind()} (torch {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads), "
           f"native bf16: {'yes' if native_bf16('cpu') else 'no'}")
    return f"{cpu}\n{describe('auto', device)}"


def main(argv: list[str] | None = None) -> int:
    """``python -m mgan.precision [--device D]``: print this machine's CPU kind and what ``auto`` picks."""
    import argparse  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m mgan.precision",
                                description="Print the CPU kind and the precision --precision auto picks here.",
                                epilog="example: python -m mgan.precision --device cpu")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    args = p.parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            p.error(f"unknown device {args.device!r} (use cpu, cuda, cuda:N or auto)")  # exits 2
    print(summary(device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
