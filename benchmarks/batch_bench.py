"""`gfti batch` throughput on one vs two workers, and whether sharding one concept's population over two
workers beats one concept per worker. Both are measured side by side in one run on the shipped toy model.

    .venv/bin/python benchmarks/batch_bench.py --concepts 4 --generations 12

throughput: the real `gfti batch` command (Ray start, worker start-up, model loads included) on the same
  manifest with --workers 1 and --workers 2 -> concepts per hour and their ratio.
shard: two Ray actors with the model loaded; (a) two concepts, one per actor; (b) the same two concepts one
  after another, each generation's population split over both actors (only candidates go out and fitness
  values come back). Same draws, so the losses must agree; the wall times are compared.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's gfti_core and toyworld, as the other benchmarks do
FAST = ["--popsize", "8", "--samples-per-candidate", "4", "--holdout-samples", "8", "--init-mode", "word",
        "--init-text", "star", "--no-auto-context", "--subspace-dim", "16"]
log = logging.getLogger("batch_bench")


def _manifest(root: Path, count: int) -> Path:
    images = sorted((ROOT / "toyworld" / "example_concept").glob("*.png"))
    rows = ["images,token,seed"]
    for i in range(count):
        folder = root / f"c{i}"
        folder.mkdir()
        for image in images[i % 3:i % 3 + 4]:
            shutil.copy(image, folder / image.name)
        rows.append(f"c{i},sks-c{i},{i}")
    path = root / "concepts.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def throughput(count: int, generations: int, order: tuple[int, ...]) -> dict[int, float]:
    """Wall seconds of `gfti batch` on `count` concepts with 1 and with 2 workers, in the given order."""
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _manifest(Path(tmp), count)
        for workers in order:
            cmd = [sys.executable, "-m", "gfti_core.cli", "batch", str(manifest), "--model", "toy", "--out-dir",
                   f"{tmp}/out{workers}", "--workers", str(workers), "--generations", str(generations), *FAST]
            started = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
            seconds[workers] = time.perf_counter() - started
            log.info("%d worker(s): %d concepts in %.1f s", workers, count, seconds[workers])
    return seconds


class Worker:
    """A Ray actor holding the toy model and the started runs; it either runs whole generations of a concept
    or scores a slice of another process's population on a generation's shared draw."""

    def __init__(self, states: dict[str, bytes]) -> None:
        import torch

        torch.set_num_threads(1)
        from gfti_core.backends.diffusers_backend import DiffusersBackend
        from gfti_core.state_io import load_state
        from toyworld import load_pipeline

        self.backend = DiffusersBackend(load_pipeline(), model_name="gfti-toy")
        self.states = {}
        for name, raw in states.items():
            path = Path(tempfile.mkstemp(suffix=".safetensors")[1])
            path.write_bytes(raw)
            self.states[name] = load_state(path)
            path.unlink()

    def run(self, name: str, generations: int) -> list[float]:
        from gfti_core.engine import run_generations

        return run_generations(self.states[name], self.backend, generations).history["best"]

    def losses(self, name: str, x: np.ndarray, generation: int) -> np.ndarray:
        import torch

        from gfti_core.objective import Evaluator, draw_samples, generation_generator

        state, cfg = self.states[name], self.states[name].config
        draw = draw_samples(state.data, cfg.samples_per_candidate, (cfg.timestep_min, cfg.timestep_max),
                            generation_generator(cfg.seed, generation))
        vectors = state.subspace.decode(torch.as_tensor(np.array(x)))  # Ray's arrays arrive read-only
        with torch.no_grad():
            return Evaluator(self.backend, state.data, cfg.batch_rows).population_loss(vectors, draw).numpy()


def sharded(ray, workers, name: str, state, generations: int) -> list[float]:
    """One concept's generations with each population split over `workers` (ask/tell stay here)."""
    from gfti_core.optim import sanitize_fitness

    opt, best = state.optimizer(), []
    for generation in range(generations):
        x = opt.ask()
        parts = np.array_split(x, len(workers))
        raw = np.concatenate(ray.get([w.losses.remote(name, p, generation) for w, p in zip(workers, parts)]))
        fitness, _ = sanitize_fitness(raw)
        opt.tell(x, fitness)
        best.append(float(fitness.min()))
    return best


def shard_benchmark(generations: int) -> dict[str, float]:
    import ray

    from gfti_core.backends.diffusers_backend import DiffusersBackend
    from gfti_core.config import InversionConfig
    from gfti_core.engine import start_run
    from gfti_core.images import load_image_folder
    from gfti_core.state_io import state_to_bytes
    from toyworld import load_pipeline

    backend = DiffusersBackend(load_pipeline(), model_name="gfti-toy")
    images = load_image_folder(ROOT / "toyworld" / "example_concept", 64).images
    cfg = dict(popsize=8, samples_per_candidate=4, holdout_samples=8, init_mode="word", init_text="star",
               auto_context=False, subspace_dim=16, generations=generations)
    starts = {f"c{i}": start_run(backend, InversionConfig(token=f"sks-c{i}", seed=i, **cfg), images[i:i + 4])
              for i in range(2)}
    raw = {name: state_to_bytes(s) for name, s in starts.items()}
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    try:
        actors = [ray.remote(num_cpus=1)(Worker).remote(raw) for _ in range(2)]
        ray.get([a.run.remote("c0", 1) for a in actors])  # models loaded and warm before any clock starts
        started = time.perf_counter()
        per_concept = ray.get([a.run.remote(f"c{i}", generations) for i, a in enumerate(actors)])
        t_per_concept = time.perf_counter() - started
        started = time.perf_counter()
        split = [sharded(ray, actors, f"c{i}", starts[f"c{i}"], generations) for i in range(2)]
        t_sharded = time.perf_counter() - started
        started = time.perf_counter()
        ray.get(actors[0].run.remote("c0", generations))
        t_one = time.perf_counter() - started
    finally:
        ray.shutdown()
    diff = max(abs(a - b) for p, s in zip(per_concept, split) for a, b in zip(p, s))
    return {"per_concept_two": t_per_concept, "sharded_two": t_sharded, "one_concept_one_worker": t_one,
            "best_loss_max_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concepts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=12)
    parser.add_argument("--skip", choices=("throughput", "shard"), help="leave one measurement out")
    parser.add_argument("--repeat", type=int, default=1, help="throughput pairs, alternating which goes first")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.skip != "throughput":
        for i in range(args.repeat):
            t = throughput(args.concepts, args.generations, (1, 2) if i % 2 == 0 else (2, 1))
            log.info("throughput: 1 worker %.0f concepts/h, 2 workers %.0f concepts/h, ratio %.2fx",
                     3600 * args.concepts / t[1], 3600 * args.concepts / t[2], t[1] / t[2])
    if args.skip != "shard":
        s = shard_benchmark(args.generations)
        log.info("shard: 2 concepts one per worker %.1f s, the same 2 sharded over 2 workers %.1f s (%.2fx); one "
                 "concept alone on one worker %.1f s, sharded %.1f s per concept; best-loss max diff %.2g",
                 s["per_concept_two"], s["sharded_two"], s["sharded_two"] / s["per_concept_two"],
                 s["one_concept_one_worker"], s["sharded_two"] / 2, s["best_loss_max_diff"])


if __name__ == "__main__":
    main()
