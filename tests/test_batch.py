"""`gfti batch` on a real local Ray: three toy concepts on two workers, one worker SIGKILLed mid-run, then the
same command again: finished concepts are skipped untouched, the killed one resumes from its checkpoint and ends
exactly like an uninterrupted `gfti train` of it. Plus the manifest's checks, which run before Ray starts."""
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from gfti_core.cli import main
from gfti_core.formats import read_embedding
from gfti_core.state_io import load_state

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "toyworld" / "example_concept"
FAST = ["--popsize", "4", "--samples-per-candidate", "2", "--holdout-samples", "4", "--init-mode", "word",
        "--init-text", "star", "--no-auto-context", "--subspace-dim", "8", "--checkpoint-every", "2",
        "--holdout-every", "0"]
LONG = 20  # generations of the concept that is killed: long enough to be caught between two checkpoints

pytestmark = pytest.mark.skipif(not (ROOT / "toyworld" / "model" / "model_index.json").exists(),
                                reason="toy model weights not found in toyworld/model")


def _concept_folder(root: Path, name: str, first: int) -> Path:
    folder = root / name
    folder.mkdir()
    for image in sorted(EXAMPLE.glob("*.png"))[first:first + 3]:
        shutil.copy(image, folder / image.name)
    return folder


@pytest.fixture
def manifest(tmp_path):
    for name, first in (("star", 0), ("star2", 2), ("star3", 3)):
        _concept_folder(tmp_path, name, first)
    path = tmp_path / "concepts.csv"
    # The long concept comes first so that it starts at once, beside the two short ones on the other worker.
    path.write_text(f"images,token,generations\nstar,sks-c,{LONG}\nstar2,sks-a,3\nstar3,sks-b,3\n")
    return path


class _Driver:
    """`gfti batch` in its own process (it starts its own local Ray), its output collected line by line."""

    def __init__(self, manifest: Path, out_dir: Path) -> None:
        cmd = [sys.executable, "-m", "gfti_core.cli", "batch", str(manifest), "--model", "toy", "--out-dir",
               str(out_dir), "--workers", "2", "--retries", "0", *FAST]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.extend(part for part in re.split(r"[\r\n]", raw.decode(errors="replace")) if part.strip())

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            assert self.proc.poll() is None, "\n".join(self.lines[-40:])
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines[-40:]))

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code, "\n".join(self.lines)


def _generation(state: Path) -> int:
    """Generations in a state file, from its header (the file is replaced atomically, never half-written)."""
    with safe_open(str(state), framework="pt") as fh:
        return fh.get_slice("history.best").get_shape()[0]


def _wait_for_checkpoint(state: Path, generation: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.exists() and _generation(state) >= generation:
            return
        time.sleep(0.05)
    raise AssertionError(f"{state} did not reach generation {generation} within {timeout} s")


def _kill_worker(driver: _Driver, pid: int) -> None:
    import psutil

    assert pid in {p.pid for p in psutil.Process(driver.proc.pid).children(recursive=True)}, "not our worker"
    os.kill(pid, signal.SIGKILL)


def _files(out_dir: Path, token: str) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out_dir.glob(f"{token}.*"))}


@pytest.mark.timeout(1500)  # about 2 minutes alone; this machine's CI may share its 2 cores with other jobs
def test_killed_worker_then_rerun_finishes_all_like_gfti_train(manifest, tmp_path):
    out = tmp_path / "out"
    first = _Driver(manifest, out)
    pid = int(first.wait_for(r"sks-c: running on \S+, pid (\d+)", timeout=240).group(1))
    _wait_for_checkpoint(out / "sks-c.state.safetensors", 2, timeout=240)
    _kill_worker(first, pid)
    code, text = first.finish()
    assert code == 1, text
    assert re.search(r"sks-c\s+failed\s.*worker died", text), text
    killed_at = _generation(out / "sks-c.state.safetensors")
    assert 2 <= killed_at < LONG and not (out / "sks-c.safetensors").exists()
    finished = {token: _files(out, token) for token in ("sks-a", "sks-b")}
    for token, files in finished.items():  # finished like `gfti train`: embedding, chart and state
        assert set(files) == {f"{token}.safetensors", f"{token}.loss.png", f"{token}.state.safetensors"}

    time.sleep(0.05)  # a rewrite would now show as a newer mtime
    code, text = _Driver(manifest, out).finish()
    assert code == 0, text
    assert "sks-a: already finished" in text and "sks-b: already finished" in text
    assert re.search(rf"sks-c: running on \S+, pid \d+, resuming at generation {killed_at}\b", text), text
    for token, files in finished.items():
        assert _files(out, token) == files, f"{token}'s finished files were touched"

    # The resumed concept ends exactly like one uninterrupted `gfti train` with the same options.
    ref = tmp_path / "ref"
    ref.mkdir()
    assert main(["train", "--model", "toy", "--images", str(tmp_path / "star"), "--token", "sks-c", "--generations",
                 str(LONG), "--out", str(ref / "sks-c.safetensors"), *FAST]) == 0
    assert {p.name for p in out.glob("sks-c.*")} == {p.name for p in ref.glob("sks-c.*")}
    resumed, straight = load_state(out / "sks-c.state.safetensors"), load_state(ref / "sks-c.state.safetensors")
    assert resumed.generation == straight.generation == LONG
    for key in ("best", "mean", "step_size", "forward_rows"):
        assert np.allclose(resumed.history[key], straight.history[key], rtol=0, atol=1e-6), key
    a, b = read_embedding(out / "sks-c.safetensors"), read_embedding(ref / "sks-c.safetensors")
    assert (a.vectors["clip_l"] - b.vectors["clip_l"]).abs().max() < 1e-4
    assert a.token == b.token == "sks-c" and set(a.metadata) == set(b.metadata)


def test_bad_rows_are_all_reported_with_line_numbers_before_any_work(tmp_path, caplog):
    _concept_folder(tmp_path, "good", 0)
    path = tmp_path / "bad.csv"
    path.write_text("images,token,popsize\n"
                    "good,sks-a,8\n"
                    "missing,sks-b,8\n"          # line 3: no such folder
                    "good,SKS-A,8\n"             # line 4: same token (file systems ignore case)
                    "good,sks-d,many\n"          # line 5: not a number
                    "good,sks-e,1\n")            # line 6: below popsize's minimum
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        code = main(["batch", str(path), "--model", "toy", "--out-dir", str(out)])
    assert code == 2 and not out.exists()  # nothing started, not even the output folder
    text = caplog.text
    assert "line 3: image folder" in text and "does not exist" in text
    assert "line 4: token 'SKS-A' is already used on line 2" in text
    assert "line 5: popsize='many' is not a whole number" in text
    assert "line 6: popsize=1 is below its minimum" in text
    assert "line 2" not in text.replace("on line 2", "")


def test_unknown_column_names_the_near_miss(tmp_path, caplog):
    _concept_folder(tmp_path, "good", 0)
    path = tmp_path / "typo.csv"
    path.write_text("images,token,popsise\ngood,sks-a,8\n")
    with caplog.at_level(logging.ERROR):
        assert main(["batch", str(path), "--model", "toy", "--out-dir", str(tmp_path / "out")]) == 2
    assert "line 1: unknown column 'popsise'; did you mean 'popsize'?" in caplog.text


def test_manifest_cells_override_flags_and_keep_types(tmp_path):
    from gfti_core.batch_manifest import read_manifest

    _concept_folder(tmp_path, "good", 0)
    path = tmp_path / "m.csv"
    path.write_text("images,token,num-vectors,flip,sigma\ngood,sks-a,2,false,0.25\ngood,sks-b,,,\n")
    a, b = read_manifest(path, {"popsize": 6, "sigma": 1.0})
    assert a.given == {"popsize": 6, "sigma": 0.25, "num_vectors": 2, "flip": False, "token": "sks-a"}
    assert b.given == {"popsize": 6, "sigma": 1.0, "token": "sks-b"} and b.images == tmp_path / "good"


@pytest.mark.parametrize("flags,expect", [
    (["--gpus-per-task", "2"], "outside 0..1"),
    (["--device", "cuda"], "needs --gpus-per-task"),
    (["--workers", "0"], "--workers must be 1 or more"),
])
def test_bad_flags_are_one_clear_line(flags, expect, tmp_path, caplog):
    _concept_folder(tmp_path, "good", 0)
    path = tmp_path / "m.csv"
    path.write_text("images,token\ngood,sks-a\n")
    with caplog.at_level(logging.ERROR):
        assert main(["batch", str(path), "--model", "toy", "--out-dir", str(tmp_path / "out"), *flags]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and expect in errors[0], errors
