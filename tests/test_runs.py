"""Run folders shared by every trainer (mgan.runs): numbering from 00000, no two processes in one
folder, metrics.jsonl without repeated steps after a resume. (wandb itself: test_wandb.py.)"""

import json
import threading
from pathlib import Path

import pytest

from mgan import runs


def test_numbering_starts_at_00000_and_continues_after_the_highest(tmp_path):
    root = tmp_path / "runs"
    assert runs.next_run_dir(root, "picasso") == root / "00000-picasso"  # the folder is created too
    assert runs.next_run_dir(root, "quick") == root / "00001-quick"
    (root / "00041-old").mkdir()
    (root / "notes.txt").write_text("not a run")
    (root / "123-short").mkdir()
    assert runs.next_run_dir(root, "a b/c") == root / "00042-a_b_c"  # a name is made folder-safe
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "00000-picasso", "00001-quick", "00041-old", "00042-a_b_c", "123-short"]


def test_a_number_taken_meanwhile_is_skipped(tmp_path, monkeypatch):
    """Another process creates the folder between the listing and the mkdir: the next number is taken."""
    real_mkdir = Path.mkdir

    def racing_mkdir(self, *args, **kwargs):
        if self.name == "00000-x" and not self.exists():
            real_mkdir(self)  # the other process wins
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    assert runs.next_run_dir(tmp_path, "x") == tmp_path / "00001-x"


def test_concurrent_callers_never_share_a_folder(tmp_path):
    got, errors = [], []
    start = threading.Barrier(8)

    def worker():
        try:
            start.wait()
            for _ in range(5):
                got.append(runs.next_run_dir(tmp_path, "same"))
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in got) == [f"{i:05d}-same" for i in range(40)]


def test_find_run_newest_accepted_of_that_name(tmp_path):
    assert runs.find_run(tmp_path / "missing", "a", lambda p: True) is None
    for name in ("00000-a", "00001-b", "00002-a", "00003-a"):
        (tmp_path / name).mkdir()
    assert runs.find_run(tmp_path, "a", lambda p: True) == tmp_path / "00003-a"
    assert runs.find_run(tmp_path, "a", lambda p: p.name != "00003-a") == tmp_path / "00002-a"
    assert runs.find_run(tmp_path, "c", lambda p: True) is None


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resumed_metrics_do_not_repeat_steps(tmp_path):
    log = runs.MetricsLog(tmp_path)
    for step in (1, 2, 3, 4):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # cut short by the interruption
    log = runs.MetricsLog(tmp_path, resume_step=2)  # the checkpoint was at step 2
    for step in (3, 4, 5):
        log.write({"step": step, "loss": 0.0})
    log.close()
    assert _steps(tmp_path) == [1, 2, 3, 4, 5]
    runs.append_metrics(tmp_path, {"step": 6})
    runs.trim_metrics(tmp_path, 4)
    assert _steps(tmp_path) == [1, 2, 3, 4]
    runs.trim_metrics(tmp_path / "nowhere", 1)  # no file: nothing to do


def test_write_config_and_wandb_off(tmp_path):
    path = runs.write_config(tmp_path, "name: x\n")
    assert path.read_text() == "name: x\n"
    wb = runs.WandbLog(tmp_path, {"name": "x"})  # off: imports nothing, logs nothing, writes nothing
    wb.log({"loss": 1.0}, 1)
    wb.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_start_config_takes_the_checkpoints_config_or_the_yaml(tmp_path):
    from mgan import io
    from mgan.errors import InputError

    assert runs.start_config(None, None, "fmt-v1", "thing") == ({}, None)
    (tmp_path / "c.yaml").write_text("steps: 7\n")
    assert runs.start_config(None, tmp_path / "c.yaml", "fmt-v1", "thing") == ({"steps": 7}, None)
    ckpt = {"format": "fmt-v1", "opt": {}, "config": {"steps": 3}}
    io.save_checkpoint(ckpt, tmp_path / "checkpoint.pt")
    data, resume = runs.start_config(tmp_path / "checkpoint.pt", tmp_path / "c.yaml", "fmt-v1", "thing")
    assert data == {"steps": 3} and resume["format"] == "fmt-v1"  # the checkpoint wins over the YAML
    io.save_checkpoint({"format": "other", "opt": {}, "config": {}}, tmp_path / "final.pt")
    with pytest.raises(InputError, match="not a resumable thing checkpoint.pt"):
        runs.start_config(tmp_path / "final.pt", None, "fmt-v1", "thing")


def test_open_run_continues_the_resumed_folder_or_numbers_a_new_one(tmp_path):
    first = runs.open_run(tmp_path, "x", "a: 1\n")
    assert first.name == "00000-x" and (first / "config.yaml").read_text() == "a: 1\n"
    assert runs.open_run(tmp_path, "x", "a: 2\n", resume=first / "checkpoint.pt") == first
    assert (first / "config.yaml").read_text() == "a: 1\n"  # a resume keeps the run's config
    assert runs.open_run(tmp_path, "x", "a: 2\n").name == "00001-x"
