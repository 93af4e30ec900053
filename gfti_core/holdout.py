"""The hold-out curve: the search mean scored every few generations on one fixed draw.

A generation's own losses are measured on that generation's fresh draw (images, timesteps, noise), so from one
generation to the next they follow the draw, not the token. Scoring the current search mean on the *same* draw
each time makes the points comparable: this curve falls when the token learns. It is the draw the final choice
is made on (`final_vectors`), so its last point is what the final choice sees.

`history["holdout"]` keeps `[generation, loss]` pairs; generation 0 is the start vector.
"""
from __future__ import annotations

import torch

from .config import InversionConfig
from .objective import Draw, Evaluator, TrainingSet, draw_samples, generation_generator

HOLDOUT_GENERATION, HOLDOUT_STREAM = 10**6, 99  # far from every generation's own draw


def holdout_draw(data: TrainingSet, cfg: InversionConfig) -> Draw:
    """The run's fixed hold-out draw (a pure function of the seed: a resumed run scores on the same draw)."""
    return draw_samples(data, cfg.holdout_samples, (cfg.timestep_min, cfg.timestep_max),
                        generation_generator(cfg.seed, HOLDOUT_GENERATION, stream=HOLDOUT_STREAM))


def is_due(cfg: InversionConfig, generation: int, points: list) -> bool:
    """Whether the run scores its mean at this generation (every `holdout_every`, plus the start)."""
    every = cfg.holdout_every
    return bool(every) and generation % every == 0 and not (points and points[-1][0] == generation)


def score(evaluator: Evaluator, vectors: dict[str, torch.Tensor], draw: Draw) -> float:
    """vectors[enc] [N, D] → its mean loss on the draw."""
    with torch.no_grad():
        return float(evaluator.population_loss({k: v[None] for k, v in vectors.items()}, draw)[0])


def holdout_curve(history: dict) -> tuple[list[int], list[float]]:
    """(generations, losses) of the run's hold-out evaluations."""
    points = history.get("holdout") or []
    return [int(g) for g, _ in points], [float(v) for _, v in points]


def describe_holdout(history: dict) -> str:
    """The curve in one line: "hold-out loss by generation: 0: 0.1516, 3: 0.1489, ... (best 0.1329 at 57)"."""
    gens, losses = holdout_curve(history)
    if not gens:
        return "hold-out loss: not evaluated (holdout_every=0)"
    best = min(range(len(losses)), key=losses.__getitem__)
    points = ", ".join(f"{g}: {v:.5g}" for g, v in zip(gens, losses))
    return f"hold-out loss by generation: {points} (best {losses[best]:.5g} at generation {gens[best]})"


def evaluations_since_best(history: dict) -> int:
    """How many hold-out evaluations came after the lowest one (0 when the last one is the lowest)."""
    _, losses = holdout_curve(history)
    if not losses:
        return 0
    return len(losses) - 1 - losses.index(min(losses))


def stalled(cfg: InversionConfig, history: dict) -> bool:
    """Early stop: the hold-out loss has not improved for `early_stop` evaluations."""
    return bool(cfg.early_stop) and evaluations_since_best(history) >= cfg.early_stop


def describe_early_stop(cfg: InversionConfig, history: dict) -> str | None:
    """The summary line's reason when the run stopped early, else None."""
    if not stalled(cfg, history):
        return None
    gens, losses = holdout_curve(history)
    best = losses.index(min(losses))
    return (f"stopped early at generation {gens[-1]}: the hold-out loss has not improved for {cfg.early_stop} "
            f"evaluations (best {losses[best]:.5g} at generation {gens[best]})")
