"""Shared set-up of the toy-model diagnostics (loss_vs_fidelity, word_plane, subspace_projection): one concept and
seed from the command line, the toy backend, GFTI's base config and the fixed held-out draw they all score on."""
from __future__ import annotations

import argparse
import dataclasses
import logging

import torch

from toy_bench import ROOT, write_json  # toy_bench also puts the repository on sys.path
from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.config import InversionConfig
from gfti_core.objective import Evaluator, draw_samples, generation_generator


def concept_args(add_options=None) -> argparse.Namespace:
    """--concept, --seed, --out (+ the script's own options); also sets up logging and one CPU thread."""
    p = argparse.ArgumentParser()
    p.add_argument("--concept", type=int, default=2, help="index into toyworld's HELD_OUT_CONCEPTS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    if add_options:
        add_options(p)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    return args


def toy_setup(seed: int, **overrides) -> tuple[DiffusersBackend, InversionConfig]:
    """The toy backend and GFTI's defaults on toyworld's word and context lists (overrides: config fields)."""
    from toyworld import load_pipeline

    backend = DiffusersBackend(load_pipeline(), model_name="gfti-toy")
    cfg = dataclasses.replace(InversionConfig(), seed=seed, token="tok",
                              init_words=str(ROOT / "toyworld" / "concept_words.txt"),
                              context_phrases=str(ROOT / "toyworld" / "context_phrases.txt"), **overrides)
    return backend, cfg


def heldout_loss(backend, data, vectors: torch.Tensor, samples: int = 256) -> list[float]:
    """vectors [P, N, D] → mean loss per vector on one fixed draw of `samples` (common random numbers)."""
    draw = draw_samples(data, samples, (0, 999), generation_generator(4321, 0, stream=7))
    with torch.no_grad():
        return [round(float(v), 6) for v in Evaluator(backend, data, 0).population_loss({"clip_l": vectors}, draw)]


def save_result(out: str, result: dict, bulky: str) -> None:
    """Log the result without its bulky per-point list (key `bulky`) and write all of it as JSON to `out`."""
    log = logging.getLogger("diagnostics")
    log.info("%s", {k: v for k, v in result.items() if k != bulky})
    write_json(out, result)
