"""The inversion loop: start a run, advance it by generations, pick the final vector.

Hosts own the loop's *driving* (a CLI command, a ComfyUI node, an A1111 job) but never re-implement it: they
call `start_run`, then `run_generations` as often as they like, then `final_vectors`. A `RunState` is a
plain record; every function returns a new one and never mutates its input (ComfyUI caches node outputs).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .backend import PLACEHOLDER, Backend
from .config import ConfigError, InversionConfig
from .context import auto_context, planned_context_rows
from .holdout import holdout_draw, is_due, score, stalled
from .init_vectors import initial_vectors, planned_init_rows, ranked_word_vectors
from .objective import Cancelled, Draw, Evaluator, TrainingSet, draw_samples, generation_generator
from .optim import Optimizer, OptimizerSpec, replay, sanitize_fitness
from .polish import polish
from .previews import Sampler, is_due as preview_due, preview_grid
from .start_progress import StartProgress, StartTracker
from .subspace import Subspace, build_subspace
from .templates import prompts_for_images

log = logging.getLogger(__name__)

HISTORY_KEYS = ("best", "mean", "step_size", "forward_rows", "rejected", "seconds")  # seconds: cumulative wall time


@dataclass(frozen=True)
class GenerationReport:
    generation: int         # generations completed in the whole run
    target: int             # generation this call will stop at
    best: float             # lowest loss of this generation
    mean: float             # mean loss of this generation's population
    best_ever: float
    step_size: float
    forward_rows: int       # denoiser rows evaluated in the whole run
    seconds: float          # wall time of this generation
    holdout: float | None = None  # the search mean's hold-out loss, on generations that score it
    holdout_curve: tuple[tuple[int, float], ...] = ()  # every (generation, hold-out loss) of the run so far
    preview: Any = field(default=None, compare=False, repr=False)  # PIL grid of the search mean (previews.py)


@dataclass(frozen=True)
class RunState:
    config: InversionConfig
    family: str
    encoders: dict[str, int]                 # encoder name -> width
    model_name: str
    subspace: Subspace
    data: TrainingSet
    opt_spec: OptimizerSpec
    opt_fitness: np.ndarray                  # [g, P] fitness told since the last re-centre
    history: dict[str, list]                 # HISTORY_KEYS -> one value per generation (whole run);
                                             # "holdout" -> [generation, loss] per evaluation (holdout.py)
    best_vectors: dict[str, torch.Tensor]    # encoder -> [N, D], lowest single-generation loss so far
    best_loss: float
    init_info: dict
    # A live optimiser equal to replay(opt_spec, opt_fitness); a cache only, never saved or mutated.
    live: Optimizer | None = field(default=None, compare=False, repr=False)

    @property
    def generation(self) -> int:
        return len(self.history["best"])

    @property
    def forward_rows(self) -> int:
        return int(self.history["forward_rows"][-1]) if self.generation else 0

    @property
    def seconds(self) -> float:
        """Wall time of the generations run so far (image encoding and the final choice not included)."""
        return float(self.history["seconds"][-1]) if self.generation else 0.0

    def optimizer(self) -> Optimizer:
        """A private optimiser at this state (a copy of the cache, or rebuilt by replay)."""
        if self.live is not None:
            return copy.deepcopy(self.live)
        return replay(self.opt_spec, self.opt_fitness)


def build_training_set(backend: Backend, images: torch.Tensor, captions: list[str | None] | None,
                       cfg: InversionConfig, masks: torch.Tensor | None = None) -> TrainingSet:
    """Encode the images once (plus horizontal flips) → the cached latents the whole run reuses."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    captions = list(captions) if captions is not None else [None] * images.shape[0]
    if cfg.templates == "captions" and not any(captions):
        log.warning("templates=captions but no image has a caption file; using object templates")
    with torch.no_grad():
        latents = backend.encode_images(images).float().cpu()
    prompts = _known_words_only(backend, prompts_for_images(cfg.templates, captions))
    weights = _latent_weights(masks, latents.shape[-2:]) if masks is not None else None
    if cfg.flip:
        latents = torch.cat([latents, latents.flip(-1)])
        prompts = prompts + prompts
        weights = None if weights is None else torch.cat([weights, weights.flip(-1)])
    return TrainingSet(latents, prompts, weights)


def _known_words_only(backend: Backend, prompts: list[list[str]]) -> list[list[str]]:
    """Drop templates with words the model's tokenizer does not know (word-level vocabularies map them to
    <unk>, which only adds noise); an image whose templates are all unknown is trained on the token alone,
    which every tokenizer can say (a model captioned with tags never saw "a photo of")."""
    known: dict[str, bool] = {}

    def ok(prompt: str) -> bool:
        if prompt not in known:
            text = prompt.replace(PLACEHOLDER, " ").strip()
            known[prompt] = all(backend.word_ids(text, e.name) is not None for e in backend.encoders)
        return known[prompt]

    kept = [[p for p in options if ok(p)] for options in prompts]
    if not all(kept):
        log.warning("the model's tokenizer does not know the prompt templates' words; training on the bare token")
    return [options or [PLACEHOLDER] for options in kept]


def _latent_weights(masks: torch.Tensor, size) -> torch.Tensor:
    """Foreground masks [B, 1, H, W] → loss weights at latent resolution, with a floor so the background
    still counts a little (otherwise the token would be free to paint anything around the subject)."""
    small = torch.nn.functional.interpolate(masks.float(), size=tuple(size), mode="area")
    return 0.1 + 0.9 * small


def _check_backend(backend: Backend, cfg: InversionConfig) -> None:
    if cfg.timestep_max >= 1000:
        raise ConfigError("timestep_max must be below 1000")
    if cfg.optimizer == "zo-adam" and cfg.popsize < 3:
        raise ConfigError("optimizer=zo-adam needs popsize ≥ 3")


def start_run(backend: Backend, cfg: InversionConfig, images: torch.Tensor,
              captions: list[str | None] | None = None, masks: torch.Tensor | None = None, *,
              should_stop: Callable[[], bool] | None = None,
              on_progress: Callable[[StartProgress], None] | None = None) -> RunState:
    """Encode the images, choose e0, build the subspace: generation 0 of a new run.

    The start scores words (and context phrases) with the denoiser: `on_progress` receives its rows done out
    of rows planned, and `should_stop` cancels it (raises `Cancelled`; nothing of a cancelled start is kept)."""
    _check_backend(backend, cfg)
    data = build_training_set(backend, images, captions, cfg, masks)
    tables = {e.name: backend.token_table(e.name) for e in backend.encoders}
    human = captions if cfg.templates == "captions" else None
    tracker = StartTracker(_planned_start_rows(backend, tables, cfg, images.shape[0], human), on_progress)
    evaluator = Evaluator(backend, data, cfg.batch_rows, should_stop, tracker.rows)
    tracker.stage("scoring init words" if cfg.init_mode == "denoise-attention" else "initial vector")
    origin, info = initial_vectors(backend, tables, data, cfg, evaluator, images)
    if cfg.auto_context:
        tracker.stage("auto context")
        data, context = auto_context(backend, data, origin, cfg, evaluator, cfg.flip, human)
        if cfg.init_mode == "denoise-attention":
            # Score the words again on the captioned prompts: once the context is said in words, context words
            # ("gray", "kitchen") stop lowering the loss, so e0 no longer carries the context that would
            # otherwise block "<tok> on a green background" (docs/engine.md, Editability).
            tracker.stage("scoring init words with context")
            first, rows = info["top"], evaluator.forward_rows
            evaluator = Evaluator(backend, data, cfg.batch_rows, should_stop, tracker.rows)  # its own prompts
            evaluator.forward_rows = rows
            origin, info = initial_vectors(backend, tables, data, cfg, evaluator, images, info["shortlist"])
            info["top_before_context"] = first
        info["context"] = context
    count = min(cfg.subspace_words, cfg.subspace_dim) if cfg.subspace == "pca" else 0  # word rows of the basis
    words = ranked_word_vectors(backend, tables, info, count)
    subspace = build_subspace(cfg.subspace, tables, origin, k=cfg.subspace_dim, scale=cfg.subspace_scale,
                              sigma=cfg.sigma, seed=cfg.seed, norm_limit=cfg.norm_limit, words=words)
    if words:  # what the search composes, shown to the user
        info["subspace_words"] = info["ranked_words"][:count]
    spec = OptimizerSpec(cfg.optimizer, subspace.dim, cfg.popsize, cfg.sigma, cfg.seed, cfg.mirrored)
    info["init_forward_rows"] = evaluator.forward_rows
    tracker.finish()
    return RunState(cfg, backend.family, {e.name: e.width for e in backend.encoders}, backend.model_name,
                    subspace, data, spec, np.zeros((0, cfg.popsize)), {**{k: [] for k in HISTORY_KEYS}, "holdout": []},
                    {k: v.clone() for k, v in subspace.origin.items()}, float("inf"), info)


def _planned_start_rows(backend: Backend, tables, cfg: InversionConfig, images: int, captions) -> int:
    init = planned_init_rows(backend, tables, cfg)
    if not cfg.auto_context:
        return init
    again = planned_init_rows(backend, tables, cfg, rescore=True) if cfg.init_mode == "denoise-attention" else 0
    return init + again + planned_context_rows(cfg, images, captions)


def with_settings(state: RunState, **changes) -> RunState:
    """Continue a run under changed settings (e.g. a chained ComfyUI step with another popsize or sigma).
    Settings the optimiser depends on re-centre the search on the current mean; others apply directly."""
    cfg = dataclasses.replace(state.config, **changes)
    spec = OptimizerSpec(cfg.optimizer, state.subspace.dim, cfg.popsize, cfg.sigma, cfg.seed, cfg.mirrored)
    if spec == state.opt_spec:
        return dataclasses.replace(state, config=cfg)
    centre = state.subspace.decode(torch.as_tensor(state.optimizer().mean[None]))
    origin = {k: v[0] for k, v in centre.items()}
    spec = dataclasses.replace(spec, seed=cfg.seed + state.generation)  # fresh, still deterministic
    subspace = dataclasses.replace(state.subspace, origin=origin)
    return dataclasses.replace(state, config=cfg, subspace=subspace, opt_spec=spec,
                               opt_fitness=np.zeros((0, cfg.popsize)), live=None)


def run_generations(state: RunState, backend: Backend, generations: int,
                    on_generation: Callable[[GenerationReport], None] | None = None,
                    should_stop: Callable[[], bool] | None = None, sampler: Sampler | None = None) -> RunState:
    """Advance the run by up to `generations`; returns the state after the last *complete* generation
    (a cancel inside a generation discards only that generation). With `early_stop` it returns as soon as the
    hold-out loss has not improved for that many evaluations (`holdout.stalled`; every face reads the same).
    With `preview_every` and a `sampler` the reports of those generations carry a preview grid."""
    should_stop = should_stop or (lambda: False)
    opt, target = state.optimizer(), state.generation + generations
    evaluator = Evaluator(backend, state.data, state.config.batch_rows, should_stop)
    evaluator.forward_rows = state.forward_rows
    draw = holdout_draw(state.data, state.config) if state.config.holdout_every else None
    state = dataclasses.replace(state, live=None)  # intermediate states must not carry a stale cache
    try:
        state = _scored_on_holdout(state, opt, evaluator, draw)  # the start vector, or a point a cancel skipped
    except Cancelled:
        return state
    while state.generation < target and not should_stop() and not stalled(state.config, state.history):
        started = time.perf_counter()
        try:
            state = _one_generation(state, opt, evaluator)
        except Cancelled:
            return state  # `opt` may have asked without telling: it may not match the state, drop it
        try:
            state = _scored_on_holdout(state, opt, evaluator, draw)
            cancelled = False
        except Cancelled:  # the generation is complete and kept (the next call scores its point): report it
            cancelled = True
        if on_generation:
            seconds = time.perf_counter() - started
            preview = _preview(state, opt, sampler) if not should_stop() else None
            on_generation(_report(state, target, seconds, preview))
        if cancelled:
            return state
    return dataclasses.replace(state, live=opt)


def _report(state: RunState, target: int, seconds: float, preview=None) -> GenerationReport:
    h = state.history
    curve = tuple((int(g), float(v)) for g, v in h["holdout"])
    holdout = curve[-1][1] if curve and curve[-1][0] == state.generation else None
    return GenerationReport(state.generation, target, h["best"][-1], h["mean"][-1], state.best_loss,
                            h["step_size"][-1], state.forward_rows, seconds, holdout, curve, preview)


def _mean_vectors(state: RunState, opt: Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's current mean as vectors {encoder: [N, D]}."""
    return {k: v[0] for k, v in state.subspace.decode(torch.as_tensor(opt.mean[None])).items()}


def _preview(state: RunState, opt: Optimizer, sampler: Sampler | None):
    if sampler is None or not preview_due(state.config, state.generation):
        return None
    return preview_grid(sampler, state.config, _mean_vectors(state, opt), state.generation)


def _scored_on_holdout(state: RunState, opt: Optimizer, evaluator: Evaluator, draw: Draw | None) -> RunState:
    """The state with the search mean's hold-out loss appended when this generation is due (holdout.py).
    Its rows count in the run's forward rows, like every other denoiser row."""
    points = state.history.get("holdout", [])
    if draw is None or not is_due(state.config, state.generation, points):
        return state
    loss = score(evaluator, _mean_vectors(state, opt), draw)
    if np.isfinite(loss):
        history = {**state.history, "holdout": [*points, [state.generation, loss]]}
    else:  # some row the model could not score: a point neither the chart nor early stop could compare
        log.warning("hold-out loss at generation %d is %s; the point is left out", state.generation, loss)
        history = dict(state.history)
    if state.generation:
        history["forward_rows"] = [*history["forward_rows"][:-1], float(evaluator.forward_rows)]
    return dataclasses.replace(state, history=history)


def _one_generation(state: RunState, opt: Optimizer, evaluator: Evaluator) -> RunState:
    cfg, started = state.config, time.perf_counter()
    x = opt.ask()
    vectors = state.subspace.decode(torch.as_tensor(x))
    samples = cfg.samples_per_candidate * (1 if cfg.common_random_numbers else x.shape[0])
    draw = draw_samples(state.data, samples, (cfg.timestep_min, cfg.timestep_max),
                        generation_generator(cfg.seed, state.generation))
    raw = evaluator.population_loss(vectors, draw, shared=cfg.common_random_numbers).numpy()
    fitness, rejected = sanitize_fitness(raw)
    opt.tell(x, fitness)  # after the evaluation: a cancelled generation never reaches the optimiser
    best = int(np.argmin(fitness))
    history = {k: list(v) for k, v in state.history.items()}
    seconds = (state.history["seconds"][-1] if state.generation else 0.0) + time.perf_counter() - started
    for key, value in zip(HISTORY_KEYS, (fitness[best], float(np.mean(fitness[np.isfinite(raw)])),
                                         opt.step_size, evaluator.forward_rows, rejected, seconds)):
        history[key].append(float(value))
    improved = fitness[best] < state.best_loss
    return dataclasses.replace(
        state, opt_fitness=np.vstack([state.opt_fitness, fitness[None]]), history=history,
        best_vectors={k: v[best].clone() for k, v in vectors.items()} if improved else state.best_vectors,
        best_loss=float(fitness[best]) if improved else state.best_loss)


def final_vectors(state: RunState, backend: Backend, *,
                  polish_words: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Choose between the optimiser's mean, its tail average and the best-ever vectors by re-scoring them on a
    fixed held-out draw (the best-ever was measured on one lucky draw; the mean is what the search converged
    to; the tail average is the mean's path averaged over the run's last generations, docs/engine.md point 11),
    then, with `polish_samples`, the word polish (`polish.py`; `polish_words=False` skips it, e.g. after the user
    interrupted the run and wants the file now)."""
    candidates = {n: {k: v[0] for k, v in state.subspace.decode(torch.as_tensor(c[None])).items()}
                  for n, c in search_means(state).items()}
    candidates.update({"best-ever": state.best_vectors, "init": state.subspace.origin})
    names = list(candidates)
    stacked = {enc: torch.stack([candidates[n][enc] for n in names]) for enc in state.encoders}
    draw = holdout_draw(state.data, state.config)
    evaluator = Evaluator(backend, state.data, state.config.batch_rows)  # the polish reuses its device latents
    with torch.no_grad():
        losses = evaluator.population_loss(stacked, draw)
    pick = names[int(torch.argmin(losses[:-1]))]  # never silently return the init
    report = {"chosen": pick, "holdout_loss": {n: round(float(l), 6) for n, l in zip(names, losses)}}
    vectors = {k: v.clone() for k, v in candidates[pick].items()}
    if not polish_words:
        return vectors, report
    vectors, polished = polish(evaluator, state, vectors)
    return vectors, {**report, **polished}


def describe_choice(report: dict) -> str:
    """The final vector in words, for UIs and file metadata: "tail-mean", or "tail-mean, +0.5 cyan (word polish)"."""
    polished = report.get("polish")
    return report["chosen"] + (f", {polished} (word polish)" if polished and polished != "unpolished" else "")


def search_means(state: RunState) -> dict[str, np.ndarray]:
    """The search's final points in coefficient space: the optimiser's mean and, unless `tail_average` is 0,
    the mean of its means over that last share of generations (one replay yields both).

    With a noisy loss (a few draws per generation) the mean keeps random-walking at the step size after it
    has found the basin; averaging its path keeps the common drift and cancels much of the walk (Polyak
    averaging). It costs no forward passes: the means are replayed from the recorded fitness."""
    share, n = state.config.tail_average, len(state.opt_fitness)
    if share <= 0 or n < 2:
        return {"mean": state.optimizer().mean}
    path: list[np.ndarray] = []
    mean = replay(state.opt_spec, state.opt_fitness, path).mean
    return {"mean": mean, "tail-mean": np.mean(path[n - max(1, round(share * n)):], axis=0)}
