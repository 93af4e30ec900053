"""Quick GFTI probe on one toy concept: one configuration, fidelity/editability at the end. Used to choose
defaults before the full benchmark (benchmarks/toy_bench.py).

    python benchmarks/toy_probe.py --concept 0 --generations 60 --set timestep_min=500 timestep_max=900
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gfti_core.backends.diffusers_backend import DiffusersBackend  # noqa: E402
from gfti_core.config import InversionConfig  # noqa: E402
from gfti_core.engine import final_vectors, run_generations, start_run  # noqa: E402
from toy_bench import concept_tensor, measure  # noqa: E402


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--concept", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generations", type=int, default=60)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model-dir", default="")
    p.add_argument("--set", nargs="*", default=[], help="config overrides field=value")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from toyworld import load_pipeline
    from toyworld.concepts import HELD_OUT_CONCEPTS

    concept = HELD_OUT_CONCEPTS[args.concept]
    backend = DiffusersBackend(load_pipeline(model_dir=Path(args.model_dir) if args.model_dir else None))
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = dataclasses.replace(InversionConfig(), seed=args.seed, init_words=str(ROOT / "toyworld/concept_words.txt"),
                              context_phrases=str(ROOT / "toyworld/context_phrases.txt"),
                              **{k: parse_value(v) for k, v in overrides.items()})
    t0 = time.perf_counter()
    state = start_run(backend, cfg, concept_tensor(concept, args.seed))
    init = measure(backend, state.subspace.origin, concept, args.images, 1234)
    state = run_generations(state, backend, args.generations)
    vectors, choice = final_vectors(state, backend)
    learned = measure(backend, vectors, concept, args.images, 1234)
    print(json.dumps({"concept": concept, "set": overrides, "init": init, "learned": learned,
                      "choice": choice["chosen"], "rows": state.forward_rows,
                      "norm": float(vectors["clip_l"].norm(dim=-1).max()),
                      "top_words": [t["word"] for t in state.init_info["top"][:3]],
                      "context": state.init_info.get("context"), "seconds": round(time.perf_counter() - t0)}))


if __name__ == "__main__":
    main()
