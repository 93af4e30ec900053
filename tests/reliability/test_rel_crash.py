"""Crashes, races and hostile folders around the CLI's outputs: `kill -9` mid-run, two runs writing one name,
read-only / full output folders (the run state is kept), output on another file system."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from rel_helpers import FAST, TOKEN, one_clear_line
from gfti_core import cli_commands, finish, safe_io
from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.cli import main
from gfti_core.formats import read_embedding
from gfti_core.state_io import load_state

ROOT = Path(__file__).resolve().parents[2]
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin", ".ckpt")


def _temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(safe_io.TEMP_PREFIX))


# -------------------------------------------------------------------------------------------- kill -9

def _wait_for_generation(proc: subprocess.Popen, state_path: Path, generation: int, timeout: float) -> int:
    """Poll the state file the child keeps replacing; every read must be a complete, valid state."""
    deadline, seen = time.monotonic() + timeout, -1
    while time.monotonic() < deadline and seen < generation:
        assert proc.poll() is None, f"the run ended early with exit code {proc.returncode}"
        if state_path.exists():
            seen = load_state(state_path).generation
        time.sleep(0.05)
    assert seen >= generation, f"no checkpoint of generation {generation} within {timeout} s"
    return seen


def test_kill_9_mid_run_loses_at_most_one_checkpoint_and_resumes(train, images, model_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    out, state_path, log_path = run_dir / "k.safetensors", run_dir / "k.state.safetensors", tmp_path / "stderr"
    cmd = [sys.executable, "-m", "gfti_core.cli", "train", "--model", str(model_dir), "--images", str(images),
           "--token", TOKEN, "--out", str(out), *FAST, "--checkpoint-every", "1", "--generations", "100000"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            seen = _wait_for_generation(proc, state_path, 2, timeout=120)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    saved = load_state(state_path).generation
    shown = [int(n) for n in re.findall(rb"(\d+)/100000", log_path.read_bytes())]
    assert shown and saved >= max([seen, *shown]) - 1  # the progress bar counts a generation just before its checkpoint
    # Only the state survives; a temp file cut off mid-write is hidden and has no embedding suffix.
    leftovers = _temp_leftovers(run_dir)
    assert {p.name for p in run_dir.iterdir()} == {state_path.name, *leftovers}
    assert not any(name.endswith(EMBEDDING_SUFFIXES) for name in leftovers)
    result = train(out, "--resume", state_path, "--generations", str(saved + 1))
    assert result.code == 0, result.text
    assert load_state(state_path).generation == saved + 1
    assert read_embedding(out).metadata["gfti.steps"] == str(saved + 1)


def test_ctrl_c_mid_run_stops_after_the_generation_and_writes_everything(train, tmp_path, monkeypatch):
    """The first Ctrl-C is a request: the CLI finishes cleanly with what it has (exit 0), state included."""
    original, calls = DiffusersBackend.denoise_loss, {"n": 0}

    def press_ctrl_c_in_generation_two(self, *args, **kwargs):
        calls["n"] += 1  # one call per generation (--batch-rows 8)
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DiffusersBackend, "denoise_loss", press_ctrl_c_in_generation_two)
    out, state_path = tmp_path / "x.safetensors", tmp_path / "x.state.safetensors"
    handler = signal.getsignal(signal.SIGINT)
    result = train(out, "--generations", "50", "--checkpoint-every", "10")
    assert result.code == 0 and "last complete generation is kept" in result.text
    generation = load_state(state_path).generation
    assert 1 <= generation <= 2 and read_embedding(out).metadata["gfti.steps"] == str(generation)
    assert signal.getsignal(signal.SIGINT) is handler  # the CLI put the previous handler back


# ----------------------------------------------------------------------------------------------- races

def test_two_runs_writing_one_name_at_once_exactly_one_wins(model_dir, images, tmp_path, monkeypatch, caplog):
    """Both runs pass the early "exists?" check, train, then meet at the write: the atomic link decides."""
    monkeypatch.setattr(cli_commands, "stop_on_ctrl_c", lambda: contextlib.nullcontext([False]))  # main thread only
    barrier, real_write = threading.Barrier(2), finish.write_embedding  # every face writes through finish.py

    def write_at_the_same_moment(*args, **kwargs):
        barrier.wait(timeout=120)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(finish, "write_embedding", write_at_the_same_moment)
    out, codes = tmp_path / "same.safetensors", {}

    def run(seed: int) -> None:
        codes[seed] = main(["train", "--model", str(model_dir), "--images", str(images), "--token", TOKEN, "--out",
                            str(out), "--state", str(tmp_path / f"run{seed}.state.safetensors"), "--seed", str(seed),
                            *FAST, "--generations", "1"])

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert sorted(codes.values()) == [0, 2], codes
    winner = next(seed for seed, code in codes.items() if code == 0)
    loser = 3 - winner
    assert read_embedding(out).metadata["gfti.seed"] == str(winner)  # complete, and the winner's
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "exists" in errors[0] and f"run{loser}.state.safetensors" in errors[0], errors
    assert load_state(tmp_path / f"run{loser}.state.safetensors").generation == 1  # the loser's run is kept
    assert _temp_leftovers(tmp_path) == []


# ------------------------------------------------------------------------------ read-only / full folders

def _unwritable(monkeypatch, folder: Path, code: int) -> None:
    """Tests run as root, where chmod does not stop writes: refuse temp files in `folder` at the OS call."""
    real = safe_io.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise OSError(code, os.strerror(code))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(safe_io.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("code, reason", [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full")])
def test_unwritable_output_folder_keeps_the_run_state(train, tmp_path, monkeypatch, code, reason):
    out_dir, state_path = tmp_path / "out", tmp_path / "keep" / "x.state.safetensors"
    out_dir.mkdir()
    state_path.parent.mkdir()
    _unwritable(monkeypatch, out_dir, code)
    result = train(out_dir / "x.safetensors", "--state", state_path, "--generations", "2")
    one_clear_line(result, reason, f"folder {out_dir}", f"generation 2 in {state_path}", "--resume")
    assert list(out_dir.iterdir()) == []
    assert load_state(state_path).generation == 2
    monkeypatch.undo()
    rows = load_state(state_path).forward_rows
    assert train(tmp_path / "x.safetensors", "--resume", state_path).code == 0  # nothing is recomputed
    assert load_state(state_path).forward_rows == rows and read_embedding(tmp_path / "x.safetensors")


def test_read_only_output_folder_fails_before_any_generation(train, tmp_path, monkeypatch):
    """With the state beside the output (the default) nothing can be kept: fail before spending compute."""
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    _unwritable(monkeypatch, out_dir, errno.EROFS)
    calls = []
    monkeypatch.setattr(cli_commands, "run_generations", lambda *a, **k: calls.append(a))
    one_clear_line(train(out_dir / "x.safetensors", "--generations", "5"), "read-only", f"folder {out_dir}")
    assert calls == [] and list(out_dir.iterdir()) == []


def test_disk_full_at_a_checkpoint_keeps_the_previous_one(train, tmp_path, monkeypatch):
    saves, real_save = [], cli_commands.save_state

    def save_state(state, path):
        saves.append(state.generation)
        if len(saves) == 3:  # generation 0, generation 1, then the disk fills up at generation 2
            monkeypatch.setattr(safe_io, "_fsync_file", _disk_full)
        return real_save(state, path)

    monkeypatch.setattr(cli_commands, "save_state", save_state)
    out, state_path = tmp_path / "x.safetensors", tmp_path / "x.state.safetensors"
    result = train(out, "--generations", "5", "--checkpoint-every", "1")
    one_clear_line(result, "disk is full", f"generation 1 in {state_path}")
    assert saves == [0, 1, 2] and load_state(state_path).generation == 1
    assert {p.name for p in tmp_path.iterdir()} == {"imgs", state_path.name}  # no temp file, no embedding


def _disk_full(path):
    raise OSError(errno.ENOSPC, "No space left on device")


# ------------------------------------------------------------------------------ another file system

def test_output_on_another_file_system_is_written_atomically_beside_its_target(train, tmp_path, monkeypatch):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (tmpfs /dev/shm) on this machine")
    commits, real_commit = [], safe_io._commit

    def commit(tmp, path, overwrite):
        commits.append((Path(tmp), Path(path)))
        return real_commit(tmp, path, overwrite)

    monkeypatch.setattr(safe_io, "_commit", commit)
    out_dir = shm / f"gfti-reliability-{uuid.uuid4().hex}"
    out_dir.mkdir()
    try:
        out = out_dir / "x.safetensors"
        assert train(out, "--state", tmp_path / "x.state.safetensors", "--generations", "1").code == 0
        assert out in {path for _, path in commits} and read_embedding(out).token == TOKEN
        assert all(tmp.parent == path.parent for tmp, path in commits)  # os.replace/link never crosses devices
        assert _temp_leftovers(out_dir) == [] and _temp_leftovers(tmp_path) == []
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
