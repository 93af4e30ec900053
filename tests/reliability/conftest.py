"""Fixtures of the reliability suite: a tiny SD1 model folder saved once per session, a training-image folder,
and a CLI runner that returns the exit code and the ERROR lines of one call."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from gfti_core.cli import main
from rel_helpers import FAST, TOKEN, CliResult, write_images


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model gains nothing from a second thread; on a shared 2-core machine it only spins."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tiny_sd1) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sd1")
    tiny_sd1.save_pretrained(folder)
    return folder


@pytest.fixture
def images(tmp_path) -> Path:
    return write_images(tmp_path / "imgs")


@pytest.fixture
def gfti(caplog):
    """Run `gfti <argv>` in this process; returns a CliResult with only this call's log records."""
    def run(*argv) -> CliResult:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            code = main([str(a) for a in argv])
        records = caplog.records
        errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
        return CliResult(code, errors, "\n".join(r.getMessage() for r in records))
    return run


@pytest.fixture
def train(gfti, model_dir, images):
    """`gfti train` on the tiny model with FAST settings; extra flags (e.g. --generations) are appended."""
    def run(out, *extra, images=images, token=TOKEN) -> CliResult:
        return gfti("train", "--model", model_dir, "--images", images, "--token", token, "--out", out, *FAST,
                    *extra)
    return run
