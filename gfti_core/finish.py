"""The end of a run, the same in every face (CLI, demo, ComfyUI node, A1111/Forge tab): choose the final vector,
record what really ran, write the embedding under the one overwrite rule, and, where the folder is the user's
own, the loss chart and the run state beside it.

The overwrite rule: an existing file is replaced only when the caller asks to overwrite, or when the file was
written by the same run (its `gfti.run_id` metadata), so re-saving a run updates its own file and never
someone else's.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from .backend import Backend
from .chart import render_loss_chart
from .engine import RunState, describe_choice, final_vectors
from .errors import EmbeddingFileError, OutputExistsError
from .formats import Embedding, embedding_path, read_embedding, write_embedding
from .safe_io import atomic_write, display_path
from .state_io import save_state

log = logging.getLogger(__name__)

DEFAULT_FORMAT = "safetensors"  # every host loads it, and it cannot carry code (a .pt pickle can)

# The run facts every face writes, so that a file says the same about its run wherever it was made.
METADATA_KEYS = ("gfti.steps", "gfti.evaluations", "gfti.seconds", "gfti.interrupted", "gfti.best_loss",
                 "gfti.seed", "gfti.model_name", "gfti.model_hash", "gfti.config", "gfti.init", "gfti.final",
                 "gfti.host", "gfti.run_id")


@dataclass(frozen=True)
class Target:
    """Where and how a run's embedding is written."""

    path: Path
    fmt: str = DEFAULT_FORMAT
    overwrite: bool = False
    host: str = "cli"              # which face made the file: "cli", "demo", "comfyui", "webui"
    run_id: str = ""               # lets a run replace the file it wrote itself
    chart: bool = False            # also write <stem>.loss.png beside the file
    state_path: Path | None = None  # also save the run state there (resumable)


@dataclass(frozen=True)
class Finished:
    path: Path
    embedding: Embedding
    choice: dict                   # final_vectors' report: the chosen candidate, held-out losses, polish
    chart: Path | None


def output_path(target: Target) -> Path:
    """The file the target names, checked against the overwrite rule before any work is done."""
    path = embedding_path(target.path, target.fmt)
    may_replace(path, target.overwrite, target.run_id)
    return path


def may_replace(path: Path, overwrite: bool, run_id: str = "") -> bool:
    """The one overwrite rule: True when `path` exists and may be replaced, False when it does not exist;
    raises `OutputExistsError` when it exists and belongs to someone else."""
    if not path.exists():
        return False
    if overwrite or (run_id and _owner(path) == run_id):
        return True
    raise OutputExistsError(f"{display_path(path)} already exists and was not written by this run; choose another "
                            "name or turn on overwrite (--overwrite in the CLI)")


def _owner(path: Path) -> str | None:
    try:
        return read_embedding(path).metadata.get("gfti.run_id")
    except EmbeddingFileError:  # not an embedding we can read: certainly not this run's
        return None


def run_metadata(state: RunState, choice: dict, *, host: str, interrupted: bool, run_id: str = "",
                 model_hash: str = "") -> dict[str, str]:
    """What really ran: the generations and denoiser rows actually spent (not the number asked for), and the
    config with `generations` set to that number, so that it reproduces this file."""
    ran = dataclasses.replace(state.config, generations=state.generation)
    meta = {"gfti.steps": state.generation, "gfti.evaluations": state.forward_rows,
            "gfti.seconds": f"{state.seconds:.1f}", "gfti.interrupted": str(interrupted).lower(),
            "gfti.best_loss": f"{state.best_loss:.6g}", "gfti.seed": state.config.seed,
            "gfti.model_name": state.model_name, "gfti.model_hash": model_hash, "gfti.config": ran.to_json(),
            "gfti.init": state.init_info.get("mode"), "gfti.final": describe_choice(choice), "gfti.host": host,
            "gfti.run_id": run_id}
    return {k: str(v) for k, v in meta.items()}


def finish_run(state: RunState, backend: Backend, target: Target, *, interrupted: bool = False) -> Finished:
    """Choose the final vector (an interrupted run skips the word polish: the user wants the file now) and write
    everything the target asks for. The embedding goes first: it is what the user waits for."""
    path = embedding_path(target.path, target.fmt)
    vectors, choice = final_vectors(state, backend, polish_words=not interrupted)
    log.info("final vector: %s", describe_choice(choice))
    meta = run_metadata(state, choice, host=target.host, interrupted=interrupted, run_id=target.run_id,
                        model_hash=str(getattr(backend, "model_hash", "") or ""))
    emb = Embedding(vectors, state.config.token, meta)
    path = write_embedding(path, emb, target.fmt, overwrite=may_replace(path, target.overwrite, target.run_id))
    chart = None
    if target.chart:  # derived from the embedding's own run: replacing it with the file is right
        chart = path.with_name(path.stem + ".loss.png")
        atomic_write(chart, lambda tmp: render_loss_chart(state.history).save(tmp, format="PNG"), overwrite=True)
    if target.state_path is not None:
        save_state(state, target.state_path)
    log.info("wrote %s", display_path(path))
    return Finished(path, emb, choice, chart)
