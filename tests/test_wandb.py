"""wandb logging (``wandb.enabled``, offline by default): :class:`mgan.runs.WandbLog` writes an
offline wandb run inside the run folder and a resume continues it; ``python -m mgan.train``
in-process reaches it from the config (and keeps ``snapshot_every`` checkpoints on the way).
Skips where wandb is not installed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_experiment

pytest.importorskip("wandb", reason="the [wandb] extra is not installed")


@pytest.fixture(autouse=True)
def wandb_env(tmp_path, monkeypatch):
    """wandb's own folders (settings, cache, artifacts) inside ``tmp_path``, no console capture
    (it would wrap pytest's), no prompts. The mode is left to the code: offline by default."""
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def _offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def _logged(run: Path, key: bytes, timeout: float = 60.0) -> bool:
    """Whether the offline run's record file ``run-<id>.wandb`` holds ``key``; wandb's service
    writes it after ``finish()`` returns (measured: a few ms later), so wait for it a while."""
    end = time.monotonic() + timeout
    while True:
        data = b"".join(p.read_bytes() for p in run.glob("run-*.wandb"))
        if key in data or time.monotonic() > end:
            return key in data
        time.sleep(0.05)


def test_wandb_log_is_offline_in_the_run_folder_and_resumes_the_same_run(tmp_path):
    from mgan import runs

    run_dir = tmp_path / "00001-x"
    run_dir.mkdir()
    assert runs.WandbLog(run_dir, {"lr": 1.0}).run is None  # disabled: a no-op, nothing written
    assert list(run_dir.iterdir()) == []
    log = runs.WandbLog(run_dir, {"lr": 1.0}, enabled=True)
    log.log({"loss_pix": 0.5}, 1, torch.rand(1, 3, 16, 16))
    log.finish()
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    (first,) = _offline_runs(run_dir)
    assert first.name.endswith(f"-{run_id}")
    assert _logged(first, b"loss_pix") and _logged(first, b"samples")  # the row and the image
    assert len(list((first / "files" / "media" / "images").glob("samples_*.png"))) == 1
    again = runs.WandbLog(run_dir, {"lr": 1.0}, enabled=True)  # a resumed run: the same wandb run
    assert again.run.id == run_id
    again.log({"loss_pix": 0.4}, 2)
    again.finish()
    assert (run_dir / "wandb_id.txt").read_text().strip() == run_id


def test_training_reaches_wandb_from_its_config(tmp_path):
    """One tiny run (1 step) with ``wandb.enabled``; it also keeps a snapshot every step
    (``train.snapshot_every``, a path no other test runs), a copy of the latest checkpoint."""
    from mgan import io
    from mgan.train import main

    cfg = make_tiny_experiment(tmp_path, n_train=1, max_steps=1, sample_every=0, checkpoint_every=1, snapshot_every=1)
    cfg.write_text(cfg.read_text().replace("sample_count: 2", "sample_count: 0"))
    out = tmp_path / "runs"
    assert main([str(cfg), "--outdir", str(out), "--no-progress", "--threads", "1", "--set", "wandb.enabled=true"]) == 0
    (run_dir,) = out.glob("*-tiny")
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    (run,) = _offline_runs(run_dir)
    assert run.name.endswith(f"-{run_id}") and _logged(run, b"loss_pix")
    snap, latest = io.load_checkpoint(run_dir / "checkpoint-000001.pt"), io.load_checkpoint(run_dir / "checkpoint-latest.pt")
    assert snap["step"] == latest["step"] == 1
    assert all(torch.equal(v, latest["G"][k]) for k, v in snap["G"].items())
