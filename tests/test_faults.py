"""Faults (issue #6): a run killed with SIGKILL resumes exactly, a non-finite loss stops the
run with one line and keeps the last good checkpoint, and an unwritable or full disk is
reported before work starts (where it can be known) or clearly when it happens."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_tiny_experiment, smooth_image

from mgan import io, mdan, train
from mgan.training import stages

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}


def _run_and_kill(cmd: list[str], cwd: Path, ready, timeout: float = 180.0) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` is true (polled every 5 ms)."""
    log = cwd / "killed.log"
    with log.open("w") as f, subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=f, stderr=subprocess.STDOUT) as proc:
        end = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"process ended (status {proc.returncode}) before it could be killed:\n"
                            f"{log.read_text()[-3000:]}")
            if time.monotonic() > end:
                proc.kill()
                pytest.fail("timed out waiting for the process to reach the kill point")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Tiny experiment with the MDAN and crop stages already cached in ``runs/``."""
    root = tmp_path_factory.mktemp("faults")
    cfg = make_tiny_experiment(root, max_steps=10, checkpoint_every=1, sample_every=3)
    assert train.main([str(cfg), "--outdir", str(root / "runs"), "--no-progress", "--stop-after", "crops"]) == 0
    return root, cfg


def test_training_killed_with_sigkill_resumes_to_the_same_weights(project):
    root, cfg = project
    out = root / "runs"
    common = ["--outdir", str(out), "--no-progress", "--threads", "2"]
    assert train.main([str(cfg), *common, "--resume", "never"]) == 0  # uninterrupted reference
    ref = sorted(out.glob("0*-tiny"))[-1]

    kill_at = random.Random(os.getpid()).randint(2, 8)  # a random step, printed on failure
    killed = out / f"{int(ref.name[:5]) + 1:05d}-tiny"

    def reached() -> bool:
        m = killed / "metrics.jsonl"
        return m.is_file() and len(m.read_text().splitlines()) >= kill_at

    _run_and_kill([sys.executable, "-m", "mgan.train", str(cfg), *common, "--resume", "never"], root, reached)
    before = io.load_checkpoint(killed / "checkpoint-latest.pt")["step"] if (killed / train.LATEST).is_file() else 0
    assert before < 10, f"killed at step {kill_at} too late to test anything"

    assert train.main([str(cfg), *common]) == 0  # the same command again resumes the killed run
    assert not _temps(out), "leftover temp files after the resumed run"
    a, b = (io.load_checkpoint(r / "checkpoint-latest.pt") for r in (ref, killed))
    assert a["step"] == b["step"] == 10
    for net in ("G", "D", "opt_g", "opt_d"):
        flat_a, flat_b = _flatten(a[net]), _flatten(b[net])
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]), f"{net}.{k} differs after SIGKILL at step {kill_at} + resume"
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 11))
    for png in (killed / "samples").iterdir():  # every file of the run is whole
        io.load_image(png)


def _flatten(obj, prefix="") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {prefix: torch.tensor(float(obj)) if isinstance(obj, int | float) else torch.tensor(0.0)}
    out = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}.{k}"))
    return out


def test_mdan_batch_killed_resumes_without_redoing_photos(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    for i in range(4):
        io.save_image(smooth_image(i, 48, 40), photos / f"p{i}.png")
    io.save_image(smooth_image(99), tmp_path / "style.png")
    args = ["--style", str(tmp_path / "style.png"), "--content-dir", str(photos), "--out", str(out),
            "--size", "48", "--style-size", "64", "--iterations", "6", "--precision", "fp32"]
    _run_and_kill([sys.executable, "-m", "mgan.mdan", *args], tmp_path, lambda: len(list(out.glob("p*.png"))) >= 1)
    finished = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("p*.png")}
    assert 1 <= len(finished) < 4
    for name in finished:
        io.load_image(out / name)  # never half-written

    assert mdan.main(args) == 0
    assert sorted(p.name for p in out.glob("p*.png")) == [f"p{i}.png" for i in range(4)]
    for name, (data, mtime) in finished.items():  # finished photos were not redone
        assert (out / name).read_bytes() == data and (out / name).stat().st_mtime_ns == mtime
    # D's record of the photos it trained on: all but those finished before the kill, whose
    # D update may have been lost if the kill fell between writing the image and D
    done = io.load_checkpoint(out / "mdan_D.pt")["done"]
    assert set(done) | set(finished) == {f"p{i}.png" for i in range(4)} and not set(done) - {f"p{i}.png" for i in range(4)}
    assert not _temps(tmp_path)


def test_stale_temp_files_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "sub" / f".x.png.{io.TEMP_MARKER}{int(dead.stdout)}.abcd1234.tmp"
    live = tmp_path / f".y.pt.{io.TEMP_MARKER}{os.getppid()}.abcd1234.tmp"  # our parent: alive
    other = tmp_path / ".notes.tmp"  # not ours
    for p in (stale, live, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    assert io.remove_stale_temps(tmp_path, recursive=True) == [stale]
    assert live.is_file() and other.is_file()


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(project, monkeypatch, capsys):
    root, cfg = project
    out = root / "runs"
    real_step = train.Trainer.train_step

    def poisoned(self, idx):
        row = real_step(self, idx)
        if self.step == 4:  # the 5th step's loss comes out NaN
            row["loss_g"] = float("nan")
        return row

    monkeypatch.setattr(train.Trainer, "train_step", poisoned)
    capsys.readouterr()
    assert train.main([str(cfg), "--outdir", str(out), "--no-progress", "--resume", "never",
                       "--set", "train.checkpoint_every=2"]) == 1
    stderr = capsys.readouterr().err
    err = [ln for ln in stderr.splitlines() if ln.startswith("error")]
    assert "Traceback" not in stderr
    assert len(err) == 1 and err[0].startswith("error: loss_g became nan at step 5"), err
    assert "(step 4)" in err[0]
    run = sorted(out.glob("0*-tiny"))[-1]
    state = io.load_checkpoint(run / train.LATEST)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
    assert not (run / train.RELEASE_NAME).exists()


def test_unwritable_output_folder_is_reported_before_work(project, capsys):
    root, cfg = project
    blocker = root / "a_file"
    blocker.write_text("not a folder")
    assert train.main([str(cfg), "--outdir", str(blocker / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write to output folder"), err


def test_too_little_disk_space_is_reported_before_work(tmp_path, monkeypatch, capsys):
    cfg = make_tiny_experiment(tmp_path)
    out = tmp_path / "runs"
    monkeypatch.setattr(stages.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=10_000))
    assert train.main([str(cfg), "--outdir", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not enough disk space" in err[0] and "MB are free" in err[0], err
    assert not (out / "cache").exists()  # nothing started


def test_disk_full_mid_run_is_one_line_and_keeps_the_last_checkpoint(project, monkeypatch, capsys):
    root, cfg = project
    out = root / "runs"
    real_save = io.save_checkpoint
    calls = {"n": 0}

    def save(obj, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, path)

    monkeypatch.setattr(io, "save_checkpoint", save)
    capsys.readouterr()
    status = train.main([str(cfg), "--outdir", str(out), "--no-progress", "--resume", "never"])
    stderr = capsys.readouterr().err
    err = [ln for ln in stderr.splitlines() if ln.startswith("error")]
    assert "Traceback" not in stderr
    assert status == 1 and len(err) == 1 and err[0].startswith("error: disk full"), (status, err)
    run = sorted(out.glob("0*-tiny"))[-1]
    assert io.load_checkpoint(run / train.LATEST)["step"] == 2  # the write before the failed one is intact
