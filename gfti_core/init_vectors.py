"""Starting vectors e0 for a run: `word`, `denoise-attention` (default), `clip-attention`, `file`.

`denoise-attention` needs nothing but the host model: it asks the diffusion model itself which known words
best explain the user's images — each candidate word is put in the token's place and scored by the
denoising loss on a shared draw (common random numbers) — and mixes the best words' embeddings with a
softmax over their relative loss gaps.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

from .backend import Backend
from .config import ConfigError, InversionConfig
from .objective import Evaluator, TrainingSet, draw_samples, generation_generator

log = logging.getLogger(__name__)

DEFAULT_WORDS = Path(__file__).parent / "data" / "concept_words.txt"
Vectors = dict[str, torch.Tensor]  # encoder -> [N, D]


def load_word_list(value: str | Path = "", default: Path = DEFAULT_WORDS, what: str = "init word list") -> list[str]:
    """The entries a user typed, one per line, or those of the text file `value` names; empty = the shipped
    `default`. '#' starts a comment, duplicates are dropped."""
    text, source = _list_text(value, default, what)
    entries = list(dict.fromkeys(e for e in (ln.split("#", 1)[0].strip() for ln in text.splitlines()) if e))
    if not entries:
        raise ConfigError(f"the {what} {source} is empty; put one entry per line")
    return entries


def _list_text(value: str | Path, default: Path, what: str) -> tuple[str, str]:
    """→ (the list's text, where it came from). One line that names a file is that file; one line that looks
    like a path (a folder separator or a .txt ending) but names none is an error, not a one-word list."""
    value = str(value) if value else ""
    if "\n" in value.strip():
        return value, "you typed"
    path = Path(value) if value else default
    if value and not path.is_file() and not (os.sep in value or "/" in value or value.endswith(".txt")):
        return value, "you typed"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}; type the entries one per line or "
                          "give an existing text file") from exc


def word_vector(backend: Backend, tables: dict[str, torch.Tensor], text: str, encoder: str) -> torch.Tensor | None:
    """Mean of the text's token rows, rescaled to their mean norm (averaging shrinks vectors). → [D]."""
    ids = backend.word_ids(text, encoder)
    if not ids:
        return None
    rows = tables[encoder][ids]
    mean = rows.mean(0)
    return mean * (rows.norm(dim=1).mean() / mean.norm().clamp_min(1e-8))


def word_init(backend: Backend, tables: dict[str, torch.Tensor], text: str, n: int) -> Vectors:
    out = {}
    for enc in tables:
        ids = backend.word_ids(text, enc)
        if not ids:
            raise ConfigError(f"init text {text!r} is not in the model's vocabulary ({enc}); choose another "
                              "initializer word")
        if len(ids) == n:  # one token per vector: keep them apart
            out[enc] = tables[enc][ids].clone()
        else:
            out[enc] = word_vector(backend, tables, text, enc).expand(n, -1).clone()
    return out


def candidate_words(backend: Backend, tables: dict[str, torch.Tensor], words: list[str]):
    """Words every encoder can represent, with their vectors {enc: [W, D]}."""
    kept, vecs = [], {enc: [] for enc in tables}
    for word in words:
        per_enc = {enc: word_vector(backend, tables, word, enc) for enc in tables}
        if all(v is not None for v in per_enc.values()):
            kept.append(word)
            for enc, v in per_enc.items():
                vecs[enc].append(v)
    if not kept:
        raise ConfigError("none of the init words is in the model's vocabulary; use init_mode=word with a "
                          "word the model knows")
    return kept, {enc: torch.stack(v) for enc, v in vecs.items()}


def score_words(evaluator: Evaluator, data: TrainingSet, vecs: Vectors, n: int, samples: int, cfg, stream: int):
    """Mean denoising loss of each word used as the token (all n vectors), all on one shared draw. → [W]."""
    return score_vectors(evaluator, data, {enc: v[:, None, :].expand(-1, n, -1) for enc, v in vecs.items()},
                         samples, cfg, stream)


def score_vectors(evaluator: Evaluator, data: TrainingSet, batch: Vectors, samples: int, cfg, stream: int):
    """Mean denoising loss of each candidate token batch[enc] [W, n, D], all on one shared draw. → [W]."""
    draw = draw_samples(data, samples, (cfg.timestep_min, cfg.timestep_max),
                        generation_generator(cfg.seed, -1, stream))
    losses = []
    count = next(iter(batch.values())).shape[0]
    step = max(1, evaluator.rows // max(1, samples))
    for start in range(0, count, step):
        losses.append(evaluator.population_loss({enc: v[start:start + step] for enc, v in batch.items()}, draw))
    return torch.cat(losses)


def best_word_sequence(evaluator: Evaluator, data: TrainingSet, vecs: Vectors, ranked: list[int], n: int,
                       cfg, pool_size: int = 16) -> tuple[int, ...]:
    """With n > 1 vectors, the token can be a phrase: vector k starts as the k-th word of a phrase built word by
    word (a "cyan triangle" is two words, which one mixed vector draws badly: docs/engine.md point 13).

    Why word by word: words ranked alone put near-synonyms next to each other ("purple, blue", "ring, circle"),
    because each explains the same half of the images; the word that explains the *other* half ("star") can
    rank far below. So the phrase starts with the best single word and then adds, at any place, the word from
    the `pool_size` best that makes the phrase explain the images best (n − 1 rounds, one shared draw each
    round; a phrase shorter than n repeats its last word). → indices into vecs."""
    pool = ranked[:max(n, pool_size)]
    sequence = [pool[0]]
    while len(sequence) < n:
        options = [sequence[:i] + [w] + sequence[i:] for w in pool if w not in sequence
                   for i in range(len(sequence) + 1)]
        if not options:  # fewer candidate words than vectors: the best ones repeat
            sequence.append(pool[len(sequence) % len(pool)])
            continue
        padded = [o + [o[-1]] * (n - len(o)) for o in options]
        batch = {enc: torch.stack([v[p] for p in padded]) for enc, v in vecs.items()}
        losses = score_vectors(evaluator, data, batch, 8 * cfg.init_samples, cfg, stream=2 + len(sequence))
        sequence = options[int(torch.argmin(losses))]
    return tuple(sequence)


def softmax_mixture(losses: torch.Tensor, vecs: Vectors, temperature: float, top_k: int):
    """Weights ∝ exp(−Δ/τ) over the top_k words, Δ = (L − min L) / std(L). Loss gaps are measured in units of
    the scored words' spread because most of a denoising loss is irreducible noise: raw or relative gaps
    between words are ~1e-4 of the loss on every model, so a fixed scale would give uniform weights."""
    rel = (losses - losses.min()) / losses.std().clamp_min(1e-12)
    order = torch.argsort(rel)
    keep = order[:top_k] if top_k > 0 else order
    weights = torch.softmax(-rel[keep] / temperature, 0)
    mixed = {}
    for enc, v in vecs.items():
        mix = (weights[:, None] * v[keep]).sum(0)
        target_norm = (weights * v[keep].norm(dim=1)).sum()
        mixed[enc] = mix * (target_norm / mix.norm().clamp_min(1e-8))
    return mixed, keep, weights


def entropy(weights: torch.Tensor) -> float:
    w = weights.clamp_min(1e-12)
    return float(-(w * w.log()).sum())


SHORT_LIST = 16  # words the fine stage scores on the larger draw


def denoise_attention_init(backend: Backend, tables, data: TrainingSet, cfg: InversionConfig,
                           evaluator: Evaluator, shortlist: list[str] | None = None) -> tuple[Vectors, dict]:
    """Stage 1 ranks every word on one small shared draw (`init_samples` draws: the ranking only has to keep
    the right words in the short list, and it is the start's largest cost); stage 2 scores the short list
    again on a 4x larger fresh draw, so the final weights rest on a low-noise estimate. `shortlist` skips
    stage 1 (a second pass after auto context re-scores only the first pass's short list)."""
    words, vecs = candidate_words(backend, tables, shortlist or load_word_list(cfg.init_words))
    n = cfg.num_vectors
    if shortlist:
        short = torch.arange(len(words))
    else:
        coarse = score_words(evaluator, data, vecs, n, cfg.init_samples, cfg, stream=1)
        short = torch.argsort(coarse)[:SHORT_LIST]
    vecs2 = {enc: v[short] for enc, v in vecs.items()}
    fine = score_words(evaluator, data, vecs2, n, 4 * cfg.init_samples, cfg, stream=2)
    mixed, keep, weights = softmax_mixture(fine, vecs2, cfg.init_temperature, cfg.init_top_k)
    order = torch.argsort(fine).tolist()
    names = [words[int(i)] for i in short]  # the short list's words, indexed like vecs2
    info = {"mode": "denoise-attention", "words_scored": len(words), "shortlist": names,
            "top": [{"word": w, "weight": round(float(p), 4), "loss": round(float(fine[i]), 6)}
                    for w, p, i in zip((names[i] for i in keep), weights, keep)][:10],
            "ranked_words": [names[i] for i in order],  # the subspace's word rows
            "entropy_nats": round(entropy(weights), 4),
            "max_entropy_nats": round(math.log(len(keep)), 4)}
    log.info("denoise-attention init: %s (entropy %.3f nats)",
             ", ".join(f"{t['word']} {t['weight']:.2f}" for t in info["top"][:5]), info["entropy_nats"])
    if cfg.init_sum:  # config validation allows it with one vector only
        return phrase_sum_init(evaluator, data, vecs2, names, order, cfg, info)
    if n == 1:
        return {enc: v[None].clone() for enc, v in mixed.items()}, info
    sequence = best_word_sequence(evaluator, data, vecs2, order, n, cfg)
    info["sequence"] = [names[i] for i in sequence]
    log.info("denoise-attention init, one word per vector: %s", " ".join(info["sequence"]))
    return {enc: v[list(sequence)].clone() for enc, v in vecs2.items()}, info


PHRASE_SUM_SCALES = (0.5, 1.0, 1.5, 2.0, 3.0)


def phrase_sum_init(evaluator: Evaluator, data: TrainingSet, vecs: Vectors, names: list[str], order: list[int],
                    cfg, info: dict) -> tuple[Vectors, dict]:
    """One vector that is the *sum* of a phrase's words (`init_sum` words, built word by word), times the
    scale with the lowest loss. Why: one vector that mixes "cyan" and "triangle" at a token's norm draws cyan
    things but no triangles, while 2·(cyan + triangle) draws the concept (docs/engine.md point 12: on a
    plane of the two words' weights, fidelity lives where they balance). The phrase's words also lead the search's word
    coordinates, so the search starts with both on its axes."""
    sequence = best_word_sequence(evaluator, data, vecs, order, cfg.init_sum, cfg)
    base = {enc: v[list(sequence)].sum(0) for enc, v in vecs.items()}
    batch = {enc: torch.stack([s * b for s in PHRASE_SUM_SCALES])[:, None] for enc, b in base.items()}
    losses = score_vectors(evaluator, data, batch, 8 * cfg.init_samples, cfg, stream=9)
    scale = PHRASE_SUM_SCALES[int(torch.argmin(losses))]
    phrase = [names[i] for i in sequence]
    info["phrase_sum"] = {"words": phrase, "scale": scale,
                          "losses": {str(s): round(float(l), 6) for s, l in zip(PHRASE_SUM_SCALES, losses)}}
    info["ranked_words"] = phrase + [w for w in info["ranked_words"] if w not in phrase]
    log.info("denoise-attention init, phrase summed into one vector: %s × %.1f", " + ".join(phrase), scale)
    return {enc: (scale * b)[None].clone() for enc, b in base.items()}, info


def sequence_rows(pool: int, n: int, samples: int) -> int:
    """Rows `best_word_sequence` evaluates for an n-word phrase from `pool` ranked words."""
    pool = min(pool, max(n, 16))
    return sum(max(0, pool - r) * (r + 1) for r in range(1, n)) * 8 * samples


def planned_init_rows(backend: Backend, tables: dict[str, torch.Tensor], cfg: InversionConfig,
                      rescore: bool = False) -> int:
    """Denoiser rows `initial_vectors` will evaluate (for the start's progress bar); `rescore`: the second
    pass, which scores only the short list."""
    if cfg.init_mode != "denoise-attention":
        return 0
    words = len(candidate_words(backend, tables, load_word_list(cfg.init_words))[0])
    short, s = min(SHORT_LIST, words), cfg.init_samples
    rows = (0 if rescore else words * s) + short * 4 * s
    if cfg.init_sum:
        return rows + sequence_rows(short, cfg.init_sum, s) + len(PHRASE_SUM_SCALES) * 8 * s
    return rows + (sequence_rows(short, cfg.num_vectors, s) if cfg.num_vectors > 1 else 0)


def ranked_word_vectors(backend: Backend, tables: dict[str, torch.Tensor], info: dict, count: int) -> Vectors:
    """The `count` best-ranked words of a denoise- or clip-attention init as {encoder: [m, D]} (m ≤ count;
    empty dict when the init ranked no words: init_mode=word or file)."""
    names = info.get("ranked_words", [])[:count]
    if not names:
        return {}
    return {enc: torch.stack([word_vector(backend, tables, w, enc) for w in names]) for enc in tables}


def file_init(path: str, backend: Backend, n: int) -> tuple[Vectors, dict]:
    from .formats import read_embedding

    emb = read_embedding(path, expect={e.name: e.width for e in backend.encoders})
    if emb.num_vectors != n:
        raise ConfigError(f"{path} has {emb.num_vectors} vector(s) but num_vectors={n}; set num_vectors="
                          f"{emb.num_vectors} to continue from it")
    vectors = {}
    for enc in backend.encoders:
        tensor = emb.vectors.get(enc.name)
        if tensor is None:  # single-encoder files keep their own key name ('emb_params' etc.)
            tensor = next(iter(emb.vectors.values()))
        vectors[enc.name] = tensor.float().clone()
    return vectors, {"mode": "file", "path": str(path)}


def initial_vectors(backend: Backend, tables: dict[str, torch.Tensor], data: TrainingSet,
                    cfg: InversionConfig, evaluator: Evaluator, images: torch.Tensor | None = None,
                    shortlist: list[str] | None = None):
    """→ ({encoder: [N, D]}, info dict for the user). `shortlist`: denoise-attention scores only these words."""
    if cfg.init_mode == "word":
        return word_init(backend, tables, cfg.init_text, cfg.num_vectors), {"mode": "word",
                                                                             "text": cfg.init_text}
    if cfg.init_mode == "denoise-attention":
        return denoise_attention_init(backend, tables, data, cfg, evaluator, shortlist)
    if cfg.init_mode == "file":
        return file_init(cfg.init_file, backend, cfg.num_vectors)
    if cfg.init_mode == "clip-attention":
        from .init_clip import clip_attention_init

        if images is None:
            raise ConfigError("clip-attention init needs the training images")
        words, vecs = candidate_words(backend, tables, load_word_list(cfg.init_words))
        return clip_attention_init(cfg, images, words, vecs)
    raise ConfigError(f"init_mode={cfg.init_mode!r} is unknown")


def describe_start(info: dict) -> list[str]:
    """What the run starts from, in words for the user: the words mixed into e0 and, with auto context, the
    phrase the model chose for each image (so a wrong caption can be seen and fixed with a .txt file)."""
    lines = []
    if info.get("sequence"):  # several vectors, one word each
        lines.append("start vectors: " + " ".join(info["sequence"]) + " (one word per vector)")
    elif info.get("phrase_sum"):  # one vector, a phrase's words summed
        summed = info["phrase_sum"]
        lines.append(f"start vector: ({' + '.join(summed['words'])}) × {summed['scale']:g}")
    elif info.get("top"):
        lines.append("start vector: " + ", ".join(f"{t['word']} {t['weight']:.2f}" for t in info["top"][:5]))
    elif info.get("mode"):
        lines.append(f"start vector: {info['mode']} {info.get('text') or info.get('path') or ''}".rstrip())
    if info.get("subspace_words"):
        lines.append("search composes: " + ", ".join(info["subspace_words"]) + " (+ PCA directions)")
    if info.get("context"):
        lines.append("auto context: " + "; ".join(f"image {i + 1}: {c or '(own caption)'}"
                                                  for i, c in enumerate(info["context"])))
    return lines
