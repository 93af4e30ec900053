"""The training job behind the GFTI tab: form values in, an embedding file (and a live loss chart) out.

It drives the engine's loop (`start_run` → `run_generations` → `final_vectors`) and touches the webui only
through a `Host` — a handful of callables that `host_a1111` / `host_forge` fill at run time and tests fill
with lambdas (the sd-webui-controlnet pattern). Run it under the webui's queue lock (`ui.py` wraps it in
`modules.call_queue.wrap_gradio_gpu_call`).
"""
from __future__ import annotations

import dataclasses
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gfti_core.backend import PLACEHOLDER, Backend
from gfti_core.chart import render_loss_chart
from gfti_core.config import InversionConfig
from gfti_core.errors import GFTIError
from gfti_core.engine import GenerationReport, RunState, describe_choice, run_generations, start_run
from gfti_core.finish import Target, finish_run, may_replace
from gfti_core.formats import FORMAT_SUFFIXES, FORMATS, Embedding
from gfti_core.holdout import describe_early_stop
from gfti_core.previews import Sampler, is_due as preview_due, preview_grid, timeline
from gfti_core.images import load_image_folder
from gfti_core.init_vectors import describe_start
from gfti_core.objective import Cancelled
from gfti_core.start_progress import StartProgress
from gfti_core.safe_io import resolve_inside

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOptions:
    """What the tab asks besides the run config (never saved into the config)."""

    image_folder: str = ""
    resolution: int = 512
    preview_images: int = 2           # images per preview prompt (preview_every/preview_prompt: the config's)
    file_format: str = "safetensors"
    overwrite: bool = False


JOB_FIELDS = {f.name for f in dataclasses.fields(JobOptions)}


@dataclass
class Host:
    """The webui as the job sees it. Built by `host_a1111.host()` / `host_forge.host()` or by tests."""

    backend: Callable[[int, int], Backend]           # (resolution, rows_per_call) -> backend on the loaded model
    state: Any                                       # shared.state: job_count, job_no, textinfo, interrupted, …
    embeddings_dir: Callable[[], str]
    publish: Callable[[Path, Embedding], None]       # make a saved embedding usable in prompts now
    preview: Callable[[str, Embedding, int, int, int], list] | None = None  # (prompt, emb, n, seed, res) -> PILs


@dataclass(frozen=True)
class JobResult:
    message: str                      # HTML for the tab
    chart: Any                        # PIL loss chart
    previews: list                    # PIL preview grids, newest last
    path: Path | None


def split_values(values: dict[str, Any]) -> tuple[InversionConfig, JobOptions]:
    """Form values by field name → (run config, job options). Numbers from Gradio arrive as floats."""
    job = {k: v for k, v in values.items() if k in JOB_FIELDS}
    cfg = {k: v for k, v in values.items() if k not in JOB_FIELDS}
    return InversionConfig.from_dict(_typed(cfg, InversionConfig)), JobOptions(**_typed(job, JobOptions))


def _typed(values: dict[str, Any], cls) -> dict[str, Any]:
    kinds = {f.name: type(f.default) for f in dataclasses.fields(cls)}
    return {k: (int(v) if kinds.get(k) is int and isinstance(v, float) and v.is_integer() else v)
            for k, v in values.items()}


def output_path(host: Host, cfg: InversionConfig, opts: JobOptions) -> Path:
    if opts.file_format not in FORMATS:
        raise ValueError(f"file_format={opts.file_format!r} is not one of {list(FORMATS)}")
    folder = Path(host.embeddings_dir())
    if not folder.is_dir():
        raise GFTIError(f"embeddings folder {folder} does not exist; create it or start the webui with "
                        "--embeddings-dir pointing at an existing folder")
    path = resolve_inside(folder, cfg.token, FORMAT_SUFFIXES[opts.file_format])
    may_replace(path, opts.overwrite)
    return path


class _Progress:
    """Reports each generation to `shared.state`; the live preview shows the loss chart above the latest
    preview grid (the engine makes one every `preview_every` generations)."""

    def __init__(self, state, total: int):
        self.state, self.total, self.history, self.previews = state, total, {"best": [], "mean": []}, []
        state.job_count, state.job_no = total, 0

    def __call__(self, r: GenerationReport) -> None:
        self.history["best"].append(r.best)
        self.history["mean"].append(r.mean)
        self.history["holdout"] = [list(point) for point in r.holdout_curve]
        if r.preview is not None:
            self.previews.append(r.preview)
        self.state.job_count, self.state.job_no = self.total, r.generation  # a preview's txt2img resets them
        holdout = f", hold-out {r.holdout_curve[-1][1]:.5f}" if r.holdout_curve else ""
        self.state.textinfo = f"GFTI generation {r.generation}/{r.target}: mean {r.mean:.5f}{holdout}"
        if hasattr(self.state, "assign_current_image"):
            self.state.assign_current_image(timeline([render_loss_chart(self.history), *self.previews[-1:]]))


def host_sampler(host: Host, opts: JobOptions, token: str) -> Sampler | None:
    """Previews through the webui's own txt2img, the learned vectors as a temporary embedding."""
    if host.preview is None:
        return None
    name = f"gfti-preview-{token}"

    def sample(prompt: str, vectors, seed: int) -> list:
        images = host.preview(prompt.replace(PLACEHOLDER, name), Embedding(dict(vectors), name),
                              opts.preview_images, seed, opts.resolution)
        return list(images or [])
    return sample


def _interrupted(host: Host) -> bool:
    return bool(getattr(host.state, "interrupted", False))


def _start_progress(state) -> Callable[[StartProgress], None]:
    """The start (scoring words with the denoiser) as one webui job: the progress bar follows its rows."""
    def report(p: StartProgress) -> None:
        state.job_count, state.job_no = max(1, p.total_rows), p.done_rows
        state.textinfo = f"GFTI start: {p.stage}, {p.done_rows}/{p.total_rows} denoiser rows"
    return report


def train(state: RunState, backend: Backend, host: Host, opts: JobOptions, cfg: InversionConfig) -> tuple[RunState, list]:
    """Run the remaining generations; previews come from the engine every `preview_every` generations."""
    progress = _Progress(host.state, cfg.generations)
    stop = lambda: _interrupted(host)  # noqa: E731
    state = run_generations(state, backend, max(0, cfg.generations - state.generation), progress, stop,
                            host_sampler(host, opts, cfg.token))
    return state, progress.previews


def run_job(values: dict[str, Any], host: Host) -> JobResult:
    """The whole job. Raises GFTIError/ConfigError for bad input (the tab shows the message)."""
    cfg, opts = split_values(values)
    path = output_path(host, cfg, opts)
    backend = host.backend(opts.resolution, cfg.batch_rows)
    images = load_image_folder(opts.image_folder, opts.resolution)
    captions = images.captions if cfg.templates == "captions" else None
    host.state.textinfo = f"GFTI: encoding {len(images)} images, choosing the start vector"
    try:
        state = start_run(backend, cfg, images.images, captions, images.masks,
                          should_stop=lambda: _interrupted(host), on_progress=_start_progress(host.state))
    except Cancelled:
        return JobResult("Interrupted while choosing the start vector; nothing was saved.", None, [], None)
    state, previews = train(state, backend, host, opts, cfg)
    interrupted = _interrupted(host)
    # Only the embedding goes into the embeddings folder: the webui would try to load a chart or state there.
    done = finish_run(state, backend, Target(path, opts.file_format, opts.overwrite, "webui"), interrupted=interrupted)
    path = done.path
    host.publish(path, done.embedding)
    sampler = host_sampler(host, opts, cfg.token)
    if sampler and not interrupted and not preview_due(cfg, state.generation):  # the file's own vectors, last
        previews.append(preview_grid(sampler, cfg, done.embedding.vectors, state.generation))
    report = done.choice
    return JobResult(_message(path, state, report, images.warnings, interrupted),
                     render_loss_chart(state.history), [p for p in previews if p is not None], path)


def _message(path: Path, state: RunState, report: dict, warnings: list[str], interrupted: bool) -> str:
    head = "Interrupted; saved the best so far" if interrupted else "Saved"
    lines = [f"{head}: <code>{html.escape(str(path))}</code> — use <b>{html.escape(state.config.token)}</b> "
             f"in prompts.", f"{state.generation} generations, {state.forward_rows} denoiser rows; final vector: "
             f"{html.escape(describe_choice(report))} (held-out loss {report['holdout_loss']})."]
    stopped = describe_early_stop(state.config, state.history)
    lines += [html.escape(stopped)] if stopped else []
    lines += [html.escape(line) for line in describe_start(state.init_info)]
    lines += [f"note: {html.escape(w)}" for w in warnings]
    return "<br>".join(lines)
