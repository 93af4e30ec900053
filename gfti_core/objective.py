"""The fitness: mean denoising loss of each candidate embedding on a shared random draw.

Every generation draws ONE `Draw` (which images, flips, templates, timesteps and noise) and every candidate
is scored on it — common random numbers, so the ranking reflects the candidates and not the luck of the
draw. The whole population is evaluated as flat batches of rows (candidate × sample), chunked to fit memory.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .backend import Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet:
    """Cached inputs of the objective. latents [M, C, h, w] (flipped copies appended when flip is on);
    prompts[i] are the prompt choices of latent i; weights [M, 1, h, w] optional per-pixel loss weights."""

    latents: torch.Tensor
    prompts: list[list[str]]
    weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.latents.shape[0] != len(self.prompts) or not all(self.prompts):
            raise ValueError("every latent needs at least one prompt")


@dataclass(frozen=True)
class Draw:
    """S samples: latent index, prompt index, timestep and noise per sample."""

    latent_idx: torch.Tensor   # [S] long
    prompt_idx: torch.Tensor   # [S] long
    timesteps: torch.Tensor    # [S] long
    noise: torch.Tensor        # [S, C, h, w] float32 (CPU)

    def __len__(self) -> int:
        return self.latent_idx.shape[0]


def draw_samples(data: TrainingSet, count: int, t_range: tuple[int, int], generator: torch.Generator) -> Draw:
    m = data.latents.shape[0]
    latent_idx = torch.randint(0, m, (count,), generator=generator)
    choice = torch.rand(count, generator=generator)
    sizes = torch.tensor([len(data.prompts[i]) for i in latent_idx.tolist()])
    prompt_idx = (choice * sizes).long().clamp(max=sizes - 1)
    timesteps = torch.randint(t_range[0], t_range[1] + 1, (count,), generator=generator)
    noise = torch.randn((count, *data.latents.shape[1:]), generator=generator)
    return Draw(latent_idx, prompt_idx, timesteps, noise)


def generation_generator(seed: int, generation: int, stream: int = 0) -> torch.Generator:
    """Draws are a pure function of (seed, generation): a resumed run draws exactly what it would have."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + generation * 7_919 + stream) % 2**63)


class Evaluator:
    """Scores populations on draws. `rows_per_call` bounds one backend call; it halves itself on OOM."""

    def __init__(self, backend: Backend, data: TrainingSet, rows_per_call: int = 0,
                 should_stop: Callable[[], bool] | None = None, on_rows: Callable[[int], None] | None = None):
        self.backend, self.data = backend, data
        # The cached latents (and loss weights) move to the device once, not once per chunk of every generation.
        self._latents = data.latents.to(backend.device)
        self._weights = None if data.weights is None else data.weights.to(backend.device)
        self.rows = rows_per_call or backend.max_rows(tuple(data.latents.shape[1:]))
        self.should_stop = should_stop or (lambda: False)
        self.on_rows = on_rows  # called with each chunk's row count (progress of long scorings)
        self.forward_rows = 0  # denoiser rows evaluated so far (the budget measure)

    def population_loss(self, vectors: dict[str, torch.Tensor], draw: Draw, shared: bool = True) -> torch.Tensor:
        """vectors[enc] [P, N, D] → mean loss per candidate [P] (float32, CPU). With shared=False candidate p
        uses samples p*S'..(p+1)*S'-1 of the draw (S' = len(draw)//P): the original method's fresh noise."""
        if shared:
            return self.row_losses(vectors, draw).mean(1)
        p = next(iter(vectors.values())).shape[0]
        per_candidate = len(draw) // p
        cand = torch.arange(p).repeat_interleave(per_candidate)
        return self._rows_loss(vectors, cand, torch.arange(p * per_candidate), draw).view(p, per_candidate).mean(1)

    def row_losses(self, vectors: dict[str, torch.Tensor], draw: Draw) -> torch.Tensor:
        """vectors[enc] [P, N, D] → the loss of every candidate on every sample of the draw [P, S] (float32, CPU)."""
        p, s = next(iter(vectors.values())).shape[0], len(draw)
        cand, sample = torch.arange(p).repeat_interleave(s), torch.arange(s).repeat(p)
        return self._rows_loss(vectors, cand, sample, draw).view(p, s)

    def sample_losses(self, vectors: dict[str, torch.Tensor], draw: Draw) -> torch.Tensor:
        """vectors[enc] [1, N, D] → the loss of each sample of the draw [S] (float32, CPU)."""
        return self.row_losses(vectors, draw)[0]

    def _rows_loss(self, vectors, cand, sample, draw) -> torch.Tensor:
        out, start = [], 0
        while start < cand.shape[0]:
            if self.should_stop():
                raise Cancelled()
            stop = min(start + self.rows, cand.shape[0])
            try:
                out.append(self._chunk(vectors, cand[start:stop], sample[start:stop], draw))
            except torch.OutOfMemoryError:
                if self.rows == 1:
                    raise
                self.rows = max(1, self.rows // 2)
                log.warning("out of memory; evaluating %d rows per call from now on", self.rows)
                continue
            start = stop
        return torch.cat(out)

    def _chunk(self, vectors, cand, sample, draw) -> torch.Tensor:
        dev = self.backend.device
        li = draw.latent_idx[sample]
        prompts = [self.data.prompts[i][j] for i, j in zip(li.tolist(), draw.prompt_idx[sample].tolist())]
        cond = self._encode_unique(prompts, cand, vectors)
        li_dev = li.to(dev)
        weights = None if self._weights is None else self._weights[li_dev]
        loss = self.backend.denoise_loss(self._latents[li_dev], draw.timesteps[sample].to(dev),
                                         draw.noise[sample].to(dev), cond, weights)
        self.forward_rows += len(prompts)
        if self.on_rows is not None:
            self.on_rows(len(prompts))
        return loss.float().cpu()

    def _encode_unique(self, prompts: list[str], cand: torch.Tensor, vectors) -> Any:
        """Text-encode each distinct (candidate, prompt) pair once, then gather per row: with common random
        numbers every candidate repeats the same few prompts, and on small models the text encoder costs as
        much as the UNet."""
        keys = list(zip(cand.tolist(), prompts))
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        if len(first) == len(keys):
            return self.backend.encode_text(prompts, {n: v[cand] for n, v in vectors.items()})
        unique_rows = sorted(first.values())
        position = {keys[r]: i for i, r in enumerate(unique_rows)}
        gather = torch.tensor([position[k] for k in keys])
        cond = self.backend.encode_text([prompts[r] for r in unique_rows],
                                        {n: v[cand[unique_rows]] for n, v in vectors.items()})
        return gather_rows(cond, gather, len(unique_rows))


def gather_rows(cond: Any, index: torch.Tensor, batch: int) -> Any:
    """Index every batch-first tensor inside a (nested dict/list/tuple) conditioning by `index`; tensors whose
    first dimension is not the batch (shared extras) are kept as they are."""
    if isinstance(cond, torch.Tensor):
        return cond[index.to(cond.device)] if cond.dim() and cond.shape[0] == batch else cond
    if isinstance(cond, dict):
        return {k: gather_rows(v, index, batch) for k, v in cond.items()}
    if isinstance(cond, (list, tuple)):
        return type(cond)(gather_rows(v, index, batch) for v in cond)
    return cond


class Cancelled(Exception):
    """Raised inside an evaluation when the host asked to stop; the engine keeps the last complete state."""
