"""`gfti batch`: many concepts, one Ray task each, every task running `gfti train`'s own per-concept path.

A concept is finished when its embedding file exists: a re-run of the same command skips it (its files are not
touched) and resumes every other concept from its run state, which `gfti train` checkpoints every
`checkpoint_every` generations. A worker that dies is restarted by Ray (`--retries`) from that checkpoint too.
Ray is imported here only, so the ComfyUI and A1111/Forge faces never load it.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .batch_manifest import Concept, read_manifest
from .batch_progress import BatchProgress, summary_table
from .config import InversionConfig
from .errors import GFTIError
from .formats import embedding_path

log = logging.getLogger("gfti")

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # gfti_core and toyworld live here in a source checkout


def run_batch(args) -> int:
    """The `gfti batch` command: 0 when every concept is finished, 1 when some failed (re-run to resume them)."""
    from .cli_args import given_config

    device = _device(args.device, args.gpus_per_task)
    if (args.workers is not None and args.workers < 1) or args.retries < 0:
        raise GFTIError("--workers must be 1 or more and --retries 0 or more")
    concepts = read_manifest(args.manifest, given_config(args))  # every row checked before any work starts
    out_dir = Path(args.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GFTIError(f"cannot create --out-dir {out_dir} ({exc.strerror}); choose a writable folder") from exc
    jobs = [_job(c, args, device, out_dir) for c in concepts]
    todo = [j for j in jobs if not Path(j["out"]).exists()]
    results = {j["token"]: {"token": j["token"], "status": "skipped", "file": j["out"]} for j in jobs if j not in todo}
    for token in results:
        log.info("%s: already finished (%s exists), skipped", token, results[token]["file"])
    if todo:
        try:
            results.update(_run_on_ray(todo, args, len(jobs) - len(todo)))
        except KeyboardInterrupt:
            return 130  # _schedule said what was kept and how to resume
    log.info("%s", summary_table([results[j["token"]] for j in jobs]))
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0


def _device(device: str | None, gpus: float) -> str:
    if not 0 <= gpus <= 1:
        raise GFTIError(f"--gpus-per-task {gpus:g} is outside 0..1; one concept uses one GPU at most (0.5 puts two "
                        "concepts on each GPU, 0 trains on the CPU)")
    if device is None:
        return "cuda" if gpus > 0 else "cpu"
    if device.startswith("cuda") and gpus == 0:
        raise GFTIError(f"--device {device} needs --gpus-per-task (e.g. 1, or 0.5 for two concepts per GPU) so "
                        "that Ray gives each concept its share of a GPU")
    if ":" in device and gpus > 0:
        raise GFTIError(f"--device {device}: Ray chooses each concept's GPU; pass --device cuda")
    return device


def _job(concept: Concept, args, device: str, out_dir: Path) -> dict:
    """What one task needs, as plain data: the `gfti train` command line and the config values given."""
    from .cli_commands import default_state_path

    out = embedding_path(out_dir / concept.token, args.format)
    argv = ["train", "--model", args.model, "--images", str(concept.images), "--out", str(out),
            "--format", args.format, "--device", device, "--dtype", args.dtype, "--preview", str(args.preview)]
    argv += ["--model-config", args.model_config] if args.model_config else []
    argv += ["--allow-existing-token"] if args.allow_existing_token else []
    return {"token": concept.token, "argv": argv, "given": concept.given, "out": str(out),
            "state": str(default_state_path(out)), "generations": InversionConfig(**concept.given).generations}


def _run_on_ray(jobs: list[dict], args, skipped: int) -> dict[str, dict]:
    ray = _import_ray()
    workers = args.workers or (1 if not args.address else len(jobs))
    threads = 1 if args.address else max(1, (os.cpu_count() or 1) // workers)
    _start_ray(ray, args.address, workers * threads)
    try:
        _check_gpus(ray, args.gpus_per_task)
        task = ray.remote(train_concept)
        options = {"num_cpus": threads, "num_gpus": args.gpus_per_task, "max_retries": args.retries}
        board = ray.remote(num_cpus=0)(Board).remote()
        with BatchProgress(len(jobs) + skipped, skipped) as progress:
            return _schedule(ray, lambda job: task.options(name=f"gfti:{job['token']}", **options).remote(job, board),
                             board, jobs, workers, progress)
    finally:
        ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise GFTIError("gfti batch runs on Ray, which is not installed; pip install 'gfti[batch]' (or "
                        "pip install ray)") from exc
    return ray


def _start_ray(ray, address: str | None, cpus: int) -> None:
    env = {"TQDM_DISABLE": "1"}  # the driver draws every concept's bar; workers' own bars would garble them
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, logging_level=logging.WARNING)
        return
    # Local workers import this checkout's gfti_core (and toyworld), not whatever else is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=cpus, include_dashboard=False, runtime_env={"env_vars": env}, logging_level=logging.WARNING)


def _check_gpus(ray, gpus: float) -> None:
    have = ray.cluster_resources().get("GPU", 0)
    if gpus > 0 and have < gpus:
        raise GFTIError(f"--gpus-per-task {gpus:g} but the Ray cluster has {have:g} GPUs; use 0 to train on the "
                        "CPU, or join a cluster with GPUs (--address)")


def _schedule(ray, submit, board, jobs: list[dict], workers: int, progress: BatchProgress) -> dict[str, dict]:
    """Keep `workers` concepts running until all have ended; the board's events drive the progress lines."""
    waiting, running, results = list(jobs), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                job = waiting.pop(0)
                running[submit(job)] = job
            ended, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for event in ray.get(board.drain.remote()):
                progress.event(*event)
            for ref in ended:
                job = running.pop(ref)
                results[job["token"]] = _outcome(ray, ref, job)
                progress.finished(results[job["token"]])
    except KeyboardInterrupt:
        log.warning("interrupted: %d running concept(s) stop now and keep their last checkpoint; re-run the same "
                    "command to resume them", len(running))
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    return results


def _outcome(ray, ref, job: dict) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # a bug, not bad input (that comes back as a result): show it
        log.error("%s: failed with an unexpected error:\n%s", job["token"], exc)
        return {"token": job["token"], "status": "failed", "error": f"unexpected {type(exc.cause).__name__}"}
    except ray.exceptions.RayError as exc:  # the worker died (killed, out of memory, node lost)
        return {"token": job["token"], "status": "failed",
                "error": f"its worker died ({type(exc).__name__}); re-run the same command to resume it from "
                         f"{job['state']}"}


class Board:
    """A Ray actor collecting the tasks' events (start, generation, log line) until the driver drains them."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def report(self, token: str, kind: str, data) -> None:
        self.events.append((token, kind, data))

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


def train_concept(job: dict, board) -> dict:
    """One concept, in a Ray worker: `gfti train`'s run, resumed from its state file when there is one."""
    import ray

    from .cli_args import build_parser
    from .cli_commands import run_train
    from .config import ConfigError

    started, token, state = time.perf_counter(), job["token"], Path(job["state"])
    resumed = _saved_generation(state)
    args = build_parser().parse_args(job["argv"] + (["--resume", str(state)] if resumed is not None else []))
    for name, value in job["given"].items():
        setattr(args, name, value)
    board.report.remote(token, "start", {"pid": os.getpid(), "node": ray.util.get_node_ip_address(),
                                         "resumed": resumed, "generations": job["generations"]})
    with _logs_to(board, token):
        try:
            path, choice = run_train(args, lambda r: board.report.remote(
                token, "generation", {"generation": r.generation, "best": r.best_ever}))
        except (GFTIError, ConfigError) as exc:
            return {"token": token, "status": "failed", "error": str(exc), "seconds": time.perf_counter() - started}
    return {"token": token, "status": "done", "file": str(path), "seconds": time.perf_counter() - started,
            "holdout_loss": choice["holdout_loss"][choice["chosen"]], "resumed": resumed}


def _saved_generation(state: Path) -> int | None:
    """The generation a state file holds, read from its header only; None when there is no state yet.
    A damaged file counts as present: `--resume` then refuses it with its own clear message."""
    if not state.exists():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(state), framework="pt") as fh:
            return int(fh.get_slice("history.best").get_shape()[0])
    except Exception:  # any unreadable header: let load_state explain it
        return 0


class _logs_to:
    """Send this task's GFTI log lines to the driver (prefixed with the concept there), not to stderr."""

    NAMES = ("gfti", "gfti_core")

    def __init__(self, board, token: str) -> None:
        self.handler = _BoardHandler(board, token)

    def __enter__(self):
        self.saved = []
        for name in self.NAMES:
            logger = logging.getLogger(name)
            self.saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(self.handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        return self

    def __exit__(self, *exc) -> None:
        for logger, level, propagate in self.saved:  # the worker process runs the next concept afterwards
            logger.removeHandler(self.handler)
            logger.setLevel(level)
            logger.propagate = propagate


class _BoardHandler(logging.Handler):
    def __init__(self, board, token: str) -> None:
        super().__init__(logging.INFO)
        self.board, self.token = board, token

    def emit(self, record: logging.LogRecord) -> None:
        self.board.report.remote(self.token, "log", (record.levelno, record.getMessage()))
