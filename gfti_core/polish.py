"""Word polish: after the search, try a little more of each word the search composes, and keep a change only if a
large fixed draw prefers it.

Why: a generation scores its candidates on `samples_per_candidate` draws (8 by default), which cannot resolve the
loss differences of ~0.001 that decide whether a token draws its colour as well as its shape. On the toy
benchmark the defaults' vector for cyan triangle drew white triangles half the time, and the vector plus half a
word "cyan" had a lower loss on 256 common draws and drew cyan more often. The search's
word coordinates (`subspace_words`) are the natural places to look: each is a whole word the init found in the
images, so "+0.5 cyan" is a step a user would understand. The unpolished vector is always a candidate, so the
polish can only lower the loss on its draw.
"""
from __future__ import annotations

import torch

from .objective import Evaluator, draw_samples, generation_generator
from .subspace import cap_norm

POLISH_SCALES = (0.5, 1.0, 2.0)  # multiples of a whole word vector


def polish_candidates(vectors: dict[str, torch.Tensor], word_rows: dict[str, torch.Tensor], words: list[str],
                      scales=POLISH_SCALES, max_norm: dict[str, float] | None = None
                      ) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The vectors ({encoder: [N, D]}) and, for every vector slot, word and scale, the vectors with that much of
    the word added (word_rows[enc] [m, D], one row per word, in every encoder; each result capped at max_norm).
    → (names, {encoder: [C, N, D]}), the unchanged vectors first."""
    max_norm = max_norm or {}
    names, stacks = ["unpolished"], {enc: [v] for enc, v in vectors.items()}
    slots = next(iter(vectors.values())).shape[0]
    for slot in range(slots):
        for j, word in enumerate(words):
            for scale in scales:
                names.append(f"+{scale:g} {word}" + (f" (vector {slot + 1})" if slots > 1 else ""))
                for enc, v in vectors.items():
                    moved = v.clone()
                    moved[slot] += scale * word_rows[enc][j]
                    stacks[enc].append(cap_norm(moved, max_norm.get(enc)))
    return names, {enc: torch.stack(s) for enc, s in stacks.items()}


def polish(evaluator: Evaluator, state, vectors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """→ (the candidate with the lowest loss on `polish_samples` fixed draws, {"polish": name, "polish_loss": {...},
    "polish_rows": rows}). With no word coordinates (or polish off) the vectors come back unchanged. The word rows
    are the first rows of the search's basis (subspace.py: words_and_pca_basis), so nothing is looked up again."""
    cfg, sub, words = state.config, state.subspace, state.init_info.get("subspace_words") or []
    if not cfg.polish_samples or not words:
        return vectors, {}
    rows = {enc: basis[:len(words)] for enc, basis in sub.bases.items()}
    names, stacked = polish_candidates(vectors, rows, words, max_norm=sub.max_norm)
    draw = draw_samples(state.data, cfg.polish_samples, (cfg.timestep_min, cfg.timestep_max),
                        generation_generator(cfg.seed, 10**6, stream=98))
    before = evaluator.forward_rows
    with torch.no_grad():
        losses = evaluator.population_loss(stacked, draw)
    pick = int(torch.argmin(losses))
    report = {"polish": names[pick], "polish_rows": evaluator.forward_rows - before,
              "polish_loss": {n: round(float(v), 6) for n, v in zip(names, losses)}}
    return {enc: s[pick].clone() for enc, s in stacked.items()}, report
