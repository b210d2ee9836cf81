"""Run folders shared by the trainers: ``runs/00007-name/`` with ``config.yaml`` and ``metrics.jsonl``.

STYLE.md convention 6: every training run goes to an auto-numbered folder holding the
resolved config, one JSON row per logged step, sample grids and checkpoints; nothing
is written outside it. The helpers here are what every trainer (:mod:`mgan.train`,
:mod:`mgan.perceptual`, :mod:`mgan.texture_nets`) needs for that, so no baseline has to
import another one for them:

- numbering: the first run in a folder is ``00000-name``, each new one takes one more
  than the highest number there (as StyleGAN2-ADA numbers its runs); ``mkdir`` decides
  between two processes that start at once, so they never share a folder;
- ``metrics.jsonl``: a resumed run first drops the rows past its checkpoint's step (an
  interrupted run logged them after its last checkpoint), so no step appears twice;
- wandb: optional (the ``[wandb]`` extra), offline unless asked, one wandb run per run
  folder across resumes (its id is kept in ``wandb_id.txt``).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from mgan import io
from mgan.config import load_yaml
from mgan.errors import InputError

RUN_NAME = re.compile(r"^(\d{5})-(.+)$")


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits, ``_ . -`` replaced by ``_`` (a folder name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "run"


def next_run_dir(root: str | Path, name: str) -> Path:
    """Create and return ``root/NNNNN-name``, one more than the highest number already there (``00000`` first).

    ``name`` is made safe with :func:`safe_name`. Two processes starting at once get
    different numbers (``mkdir`` fails for the second, which takes the next one).
    """
    root = io.check_writable(root)
    name = safe_name(name)
    while True:
        nums = [int(m.group(1)) for p in root.iterdir() if (m := RUN_NAME.match(p.name))]
        run = root / f"{max(nums, default=-1) + 1:05d}-{name}"
        try:
            run.mkdir()
            return run
        except FileExistsError:  # another process took the number
            continue


def find_run(root: str | Path, name: str, accept: Callable[[Path], bool]) -> Path | None:
    """The highest-numbered run folder ``root/NNNNN-name`` for which ``accept(folder)`` is true, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = sorted((p for p in root.iterdir() if (m := RUN_NAME.match(p.name)) and m.group(2) == name), reverse=True)
    return next((run for run in found if accept(run)), None)


def start_config(resume: str | Path | None, config: str | Path | None, fmt: str, what: str) -> tuple[dict, dict | None]:
    """Where a train CLI's config comes from: ``(config dict, checkpoint or None)``.

    With ``resume`` (a ``checkpoint.pt``), the checkpoint's own resolved config, so a
    resumed run cannot drift from the one it continues; else the YAML file ``config``, or
    ``{}`` for the defaults. The checkpoint must be a resumable one of format ``fmt``
    (``what`` names it in the error line).
    """
    if resume is not None:
        ckpt = io.load_checkpoint(resume)
        if ckpt.get("format") != fmt or "opt" not in ckpt:
            raise InputError(f"{resume}: not a resumable {what} checkpoint.pt")
        return dict(ckpt["config"]), ckpt
    return (load_yaml(config) if config else {}), None


def open_run(root: str | Path, name: str, config_text: str, resume: str | Path | None = None) -> Path:
    """The run folder to write to: ``resume``'s own folder, or a new numbered one under
    ``root`` (:func:`next_run_dir`) holding ``config_text`` as its ``config.yaml``."""
    if resume is not None:
        return Path(resume).parent
    run_dir = next_run_dir(root, name)
    write_config(run_dir, config_text)
    return run_dir


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


class MetricsLog:
    """``run_dir/metrics.jsonl``, kept open for appending; a run resumed at ``resume_step``
    first drops the rows past it (:func:`trim_metrics`). Each row is flushed as written."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        if resume_step is not None:
            trim_metrics(run_dir, resume_step)
        self.path = run_dir / "metrics.jsonl"
        self.file = self.path.open("a")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class WandbLog:
    """Optional Weights & Biases logging of a run folder; every call is a no-op unless ``enabled``.

    wandb is imported only when enabled (the ``[wandb]`` extra). The wandb run id is kept in
    ``run_dir/wandb_id.txt``, so a resumed run continues the same wandb run.

    Args:
        config: the resolved config as a plain dict (shown by wandb).
        mode: ``"offline"`` (the default: nothing leaves the machine) or ``"online"``.
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], enabled: bool = False, project: str = "mgan",
                 entity: str | None = None, mode: str = "offline") -> None:
        self.run = None
        if not enabled:
            return
        from mgan.extras import require  # noqa: PLC0415

        wandb = require("wandb", "wandb logging (wandb.enabled)")  # the [wandb] extra

        id_file = run_dir / "wandb_id.txt"
        if not id_file.is_file():  # (wandb.util.generate_id is gone from wandb 0.2x on)
            id_file.write_text("".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)))
        run_id = id_file.read_text().strip()
        self.wandb = wandb
        self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(run_dir), name=run_dir.name,
                              id=run_id, resume="allow", config=config)

    def log(self, row: dict, step: int, image: Tensor | None = None) -> None:
        """Log ``row`` (and an image ``[1, 3, H, W]`` in ``[0, 1]`` as ``samples``) at ``step``."""
        if self.run is None:
            return
        data = dict(row)
        if image is not None:
            data["samples"] = self.wandb.Image(io.to_uint8(image))
        self.run.log(data, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
