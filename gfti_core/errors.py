"""Errors GFTI raises on purpose for bad user input.

Every message is one line that names the problem AND the fix, so the CLI, the ComfyUI node and the
A1111/Forge tab can all show `str(err)` to the user as-is, without a traceback. Anything that is not a
`GFTIError` is a bug in GFTI (or the host) and should surface with its traceback.
"""
from __future__ import annotations

__all__ = [
    "GFTIError",
    "EmbeddingFileError",
    "ImageInputError",
    "UnsafeNameError",
    "OutputExistsError",
    "StateFileError",
    "RunDivergedError",
]


class GFTIError(Exception):
    """Base of every deliberate, user-facing error; the message names the problem and the fix."""


class EmbeddingFileError(GFTIError):
    """An embedding file is missing, corrupt, unsafe to unpickle, or for a different model family."""


class ImageInputError(GFTIError):
    """The training-image folder or one of its images cannot be used."""


class UnsafeNameError(GFTIError):
    """A user-supplied file name could escape its folder or is not portable (e.g. Windows `CON`)."""


class OutputExistsError(GFTIError):
    """An output file already exists and overwriting was not requested."""


class StateFileError(GFTIError):
    """A saved optimiser/run state file is corrupt or belongs to a different run."""


class RunDivergedError(GFTIError, FloatingPointError):
    """Every candidate of a generation scored NaN/Inf: the model's outputs are invalid (e.g. float16 overflow)."""
