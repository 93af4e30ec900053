"""Helpers of the reliability suite (docs/reliability.md): FAST run settings, the "exits 2 with one clear line"
assertion, training-image folders and a code-running pickle. Imported by name (not via `conftest`, which
names several modules in this repository)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from gfti_core.tiny import tiny_images

# The smallest run that still exercises every step: 3 candidates x 1 draw per generation, one denoiser call
# per generation (--batch-rows 8), and a word init that costs no denoiser call at all.
FAST = ["--subspace-dim", "4", "--popsize", "3", "--samples-per-candidate", "1", "--holdout-samples", "1",
        "--init-mode", "word", "--init-text", "cat", "--batch-rows", "8", "--no-auto-context"]
TOKEN = "sks-thing"


@dataclass
class CliResult:
    code: int
    errors: list[str]   # ERROR records of this call, one per message
    text: str           # every captured record of this call (warnings included)


def one_clear_line(result: CliResult, *needles: str) -> str:
    """Assert the CLI failed as a user error (exit 2) with exactly one one-line message naming `needles`."""
    assert result.code == 2, result.text
    assert len(result.errors) == 1, result.errors
    message = result.errors[0]
    assert "\n" not in message and "Traceback" not in result.text, message
    for needle in needles:
        assert needle.lower() in message.lower(), (needle, message)
    message.encode("utf-8")  # printable on a UTF-8 console: no lone surrogates
    return message


def write_images(folder: Path, count: int = 3, size: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(tiny_images(count, size=size)):
        Image.fromarray((arr.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(folder / f"{i}.png")
    return folder


class Evil:
    """Unpickling this would run a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pt(path: Path, marker: Path, width: int = 32) -> Path:
    """An A1111-shaped .pt whose pickle also carries a code-running object."""
    torch.save({"string_to_param": {"*": torch.zeros(1, width)}, "name": "x", "extra": Evil(marker)}, path)
    return path
