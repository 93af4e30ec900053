"""Save and load a `RunState` as one safetensors file: tensors for the numbers, JSON in the metadata for the
rest. No pickle anywhere, so a state file from a stranger cannot run code; a tampered or truncated file is
refused with a `StateFileError` (the optimiser history must reproduce the stored optimiser mean)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as st_load, save as st_save

from .config import InversionConfig
from .engine import HISTORY_KEYS, RunState
from .errors import StateFileError
from .objective import TrainingSet
from .optim import OptimizerSpec, replay
from .safe_io import atomic_write_bytes
from .subspace import Subspace

STATE_VERSION = "1"
MAX_STATE_BYTES = 2 * 1024**3


def state_to_bytes(state: RunState) -> bytes:
    tensors = {"data.latents": state.data.latents.contiguous(),
               "opt.fitness": torch.from_numpy(np.ascontiguousarray(state.opt_fitness, dtype=np.float64)),
               "opt.mean": torch.from_numpy(state.optimizer().mean)}
    if state.data.weights is not None:
        tensors["data.weights"] = state.data.weights.contiguous()
    for enc in state.encoders:
        tensors[f"basis.{enc}"] = state.subspace.bases[enc].contiguous()
        tensors[f"origin.{enc}"] = state.subspace.origin[enc].contiguous()
        tensors[f"best.{enc}"] = state.best_vectors[enc].contiguous()
    for key in HISTORY_KEYS:
        tensors[f"history.{key}"] = torch.tensor(state.history[key], dtype=torch.float64)
    tensors["history.holdout"] = torch.tensor(state.history.get("holdout", []), dtype=torch.float64).reshape(-1, 2)
    meta = {"gfti.state_version": STATE_VERSION, "config": state.config.to_json(), "family": state.family,
            "encoders": json.dumps(state.encoders), "model_name": state.model_name,
            "prompts": json.dumps(state.data.prompts), "init_info": json.dumps(state.init_info),
            "opt_spec": json.dumps(state.opt_spec.__dict__), "subspace_kind": state.subspace.kind,
            "max_norm": json.dumps(state.subspace.max_norm), "best_loss": repr(state.best_loss)}
    return st_save(tensors, metadata=meta)


def save_state(state: RunState, path: str | Path) -> Path:
    """Atomically (over)write the run state; a crash mid-write leaves the previous file intact."""
    path = Path(path)
    atomic_write_bytes(path, state_to_bytes(state), overwrite=True)
    return path


def is_state_file(path: str | Path) -> bool:
    """True if the file's header marks it as a GFTI run state, however damaged the rest of it is."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("gfti.state_version") is not None
    except Exception:  # unreadable, or not safetensors at all: not recognisably a state
        return False


def load_state(path: str | Path) -> RunState:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise StateFileError(f"{path} is larger than any GFTI state ({MAX_STATE_BYTES} bytes); not loading it")
        raw = path.read_bytes()
        tensors, meta = st_load(raw), _metadata(raw)
        return _build(tensors, meta, path)
    except StateFileError:
        raise
    except FileNotFoundError as exc:
        raise StateFileError(f"state file {path} does not exist; check the --resume path") from exc
    except Exception as exc:  # any failure on hostile bytes (a JSON list for a dict, sigma 0) is a bad file
        raise StateFileError(f"{path} is not a valid GFTI state file ({type(exc).__name__}: {exc}); "
                             "start a new run or use the last good checkpoint") from exc


def _metadata(raw: bytes) -> dict[str, str]:
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > len(raw) - 8:
        raise ValueError("truncated header")
    meta = json.loads(raw[8:8 + header_len]).get("__metadata__") or {}
    if meta.get("gfti.state_version") != STATE_VERSION:
        raise StateFileError("file is not a GFTI run state (missing or unknown gfti.state_version); "
                             "embedding files go to --init-file, not --resume")
    return meta


def _build(t: dict[str, torch.Tensor], meta: dict[str, str], path: Path) -> RunState:
    cfg = InversionConfig.from_dict(json.loads(meta["config"]))
    encoders = {str(k): int(v) for k, v in json.loads(meta["encoders"]).items()}
    spec = OptimizerSpec(**json.loads(meta["opt_spec"]))
    subspace = Subspace(meta["subspace_kind"], {e: t[f"basis.{e}"].float() for e in encoders},
                        {e: t[f"origin.{e}"].float() for e in encoders},
                        {str(k): float(v) for k, v in json.loads(meta["max_norm"]).items()})
    data = TrainingSet(t["data.latents"].float(), json.loads(meta["prompts"]), t.get("data.weights"))
    history = {k: t[f"history.{k}"].tolist() for k in HISTORY_KEYS if k != "seconds"}
    # States saved before wall time was recorded have none: their time is unknown, counted as 0.
    history["seconds"] = t["history.seconds"].tolist() if "history.seconds" in t else [0.0] * len(history["best"])
    history["holdout"] = _holdout_points(t.get("history.holdout"))
    fitness = t["opt.fitness"].numpy().astype(np.float64)
    _validate(cfg, encoders, spec, subspace, data, history, fitness, t)
    live = replay(spec, fitness)
    if not np.allclose(live.mean, t["opt.mean"].numpy(), rtol=0, atol=1e-9):
        raise StateFileError(f"{path} is inconsistent: its optimiser history does not reproduce its stored "
                             "mean (edited or damaged file); use an earlier checkpoint")
    return RunState(cfg, meta["family"], encoders, meta["model_name"], subspace, data, spec, fitness, history,
                    {e: t[f"best.{e}"].float() for e in encoders}, float(meta["best_loss"]),
                    json.loads(meta["init_info"]), live)


def _holdout_points(tensor: torch.Tensor | None) -> list[list]:
    """[n, 2] (generation, loss) → [[int, float], ...]; states saved before the curve existed have none."""
    if tensor is None:
        return []
    if tensor.dim() != 2 or tensor.shape[1] != 2 or not torch.isfinite(tensor).all():
        raise ValueError("the hold-out curve is not finite (generation, loss) pairs")
    return [[int(g), float(v)] for g, v in tensor.tolist()]


def _validate(cfg, encoders, spec, subspace, data, history, fitness, t) -> None:
    n = cfg.num_vectors
    for enc, width in encoders.items():
        basis, origin, best = subspace.bases[enc], subspace.origin[enc], t[f"best.{enc}"]
        if basis.dim() != 2 or basis.shape[1] != width or origin.shape != (n, width) or best.shape != (n, width):
            raise ValueError(f"tensor shapes for {enc} do not match width {width} and {n} vector(s)")
        if not (torch.isfinite(basis).all() and torch.isfinite(origin).all()):
            raise ValueError(f"non-finite values in the {enc} subspace")
    if spec.dim != subspace.dim or fitness.ndim != 2 or fitness.shape[1] != spec.popsize:
        raise ValueError("optimiser settings do not match the subspace or the fitness history")
    if not (0 < spec.sigma < float("inf")) or not np.isfinite(fitness).all():
        raise ValueError("optimiser step size or fitness history is not a finite positive number")
    lengths = {len(history[k]) for k in HISTORY_KEYS}
    if len(lengths) != 1 or fitness.shape[0] > lengths.pop():
        raise ValueError("history arrays have different lengths")
    if any(not 0 <= g <= len(history["best"]) for g, _ in history["holdout"]):
        raise ValueError("the hold-out curve names generations the run has not reached")
    if data.weights is not None and data.weights.shape[0] != data.latents.shape[0]:
        raise ValueError("loss weights do not match the latents")
