"""Run folders shared by the trainers: ``runs/00007-name/`` with ``config.yaml`` and ``metrics.jsonl``.

STYLE.md convention 6: every training run goes to an auto-numbered folder holding the
resolved config, one JSON row per logged step, sample grids and checkpoints; nothing
is written outside it. The helpers here are what every trainer needs for that, so no
baseline has to import another one for them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mgan import io

RUN_NAME = re.compile(r"^(\d{5})-(.+)$")


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits, ``_ . -`` replaced by ``_`` (a folder name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "run"


def next_run_dir(root: str | Path, name: str) -> Path:
    """Create and return ``root/NNNNN-name``, one more than the highest number already there.

    ``name`` is made safe with :func:`safe_name`. Two processes starting at once get
    different numbers (``mkdir`` fails for the second, which takes the next one).
    """
    root = io.check_writable(root)
    name = safe_name(name)
    while True:
        nums = [int(m.group(1)) for p in root.iterdir() if (m := RUN_NAME.match(p.name))]
        run = root / f"{max(nums, default=0) + 1:05d}-{name}"
        try:
            run.mkdir()
            return run
        except FileExistsError:  # another process took the number
            continue


def write_config(run_dir: Path, text: str) -> Path:
    """Write the resolved config (YAML text) to ``run_dir/config.yaml`` atomically."""
    path = run_dir / "config.yaml"
    with io.atomic_write(path, "w") as f:
        f.write(text)
    return path


def append_metrics(run_dir: Path, row: dict) -> None:
    """Append one JSON row to ``run_dir/metrics.jsonl`` (one line per logged step)."""
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def trim_metrics(run_dir: Path, step: int) -> None:
    """Drop ``metrics.jsonl`` rows past ``step``: a resumed run logs them again from its checkpoint."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the interruption
            continue
        if isinstance(row, dict) and int(row.get("step", 0)) <= step:
            keep.append(line)
    with io.atomic_write(path, "w") as f:
        f.write("".join(line + "\n" for line in keep))
