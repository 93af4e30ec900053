"""One typed description of an inversion run.

`InversionConfig` is the single source of truth for every face of GFTI: the CLI builds its flags from it,
the ComfyUI nodes build their inputs and tooltips from it, the A1111/Forge tab builds its widgets from it.
Each field carries its help text, bounds and choices in `dataclasses.field(metadata=...)`, so a new option
is added in exactly one place.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the field and the fix."""


def _opt(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
         choices: tuple[str, ...] | None = None, group: str = "train", advanced: bool = True) -> Any:
    """`advanced`: hosts may tuck the field away (ComfyUI: the GFTI Settings node); the few that every run
    sets are marked `advanced=False`."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "group": group, "advanced": advanced}
    return field(default=default, metadata=meta)


INIT_MODES = ("denoise-attention", "word", "clip-attention", "file")
SUBSPACES = ("pca", "prior-normal")
OPTIMIZERS = ("cma", "sep-cma", "zo-adam")
TEMPLATE_SETS = ("object", "style", "captions")


@dataclass(frozen=True)
class InversionConfig:
    """Everything that determines a run. Frozen: a changed run is a new config (`dataclasses.replace`)."""

    token: str = _opt("gfti-concept", "name of the new pseudo-word (also the embedding file's stem)", group="concept",
                     advanced=False)
    num_vectors: int = _opt(1, "vectors per token; with denoise-attention each vector starts as one word of a "
                            "phrase the model picks. 1 keeps the token obedient to the rest of the prompt; 2 or more "
                            "draw the subject more faithfully but follow the rest of the prompt less",
                            lo=1, hi=16, group="concept", advanced=False)
    init_mode: str = _opt("denoise-attention", "how the starting vector is chosen: score concept words by the "
                          "model's own denoising loss on your images (default), an initializer word, CLIP "
                          "image-text attention, or an existing embedding file", choices=INIT_MODES, group="init",
                          advanced=False)
    init_text: str = _opt("object", "initializer word(s) for init_mode=word (and fallback anchor)", group="init",
                          advanced=False)
    init_file: str = _opt("", "embedding file to start from for init_mode=file", group="init")
    init_clip_model: str = _opt("", "local CLIP model folder (both towers) for init_mode=clip-attention",
                                group="init")
    init_words: str = _opt("", "words the init scores (denoise-attention, clip-attention), one per line, or the "
                           "path of a text file with one per line; empty = the shipped ImageNet + style list",
                           group="init")
    init_temperature: float = _opt(0.25, "denoise-attention softmax temperature, in units of the scored words' "
                                   "loss spread (std); lower = sharper", lo=1e-3, hi=100.0, group="init")
    clip_temperature: float = _opt(0.02, "clip-attention softmax temperature over cosine similarities", lo=1e-4,
                                   hi=10.0, group="init")
    init_top_k: int = _opt(2, "keep only the k best-scoring words in the mixture (0 = all); few words leave "
                           "the search's word coordinates free to set every word's weight", lo=0, hi=5000,
                           group="init")
    init_sum: int = _opt(0, "one vector only: start from the sum of an N-word phrase built word by word "
                         "(e.g. cyan + triangle), scaled by the loss, instead of the softmax mixture at one "
                         "token's norm (0 = mixture)", lo=0, hi=8, group="init")
    init_samples: int = _opt(4, "draws on which every candidate word is ranked; the short list of 16 is scored on 4x as many", lo=1, hi=64,
                             group="init")
    subspace: str = _opt("pca", "search space: principal directions of the token table, or BBT's "
                         "prior-normal random projection", choices=SUBSPACES, group="search")
    subspace_dim: int = _opt(64, "coefficients per vector and text encoder", lo=1, hi=4096, group="search")
    subspace_words: int = _opt(4, "how many of the search's coefficients are the init's best-scoring words "
                               "(at most subspace_dim; a unit coefficient adds one whole word vector; the rest are "
                               "PCA directions), so the search can compose words (\"cyan\" + \"triangle\"), which "
                               "a PCA of the token table barely spans. Used with the inits that rank words "
                               "(denoise-attention, clip-attention)", lo=0, hi=4096, group="search")
    subspace_scale: float = _opt(8.0, "length of a unit coefficient step in units of a typical token's spread; "
                                 "larger lets a short search move the vector further from its start",
                                 lo=1e-3, hi=100.0, group="search")
    optimizer: str = _opt("sep-cma", "sep-cma = CMA-ES with a diagonal covariance (adapts each direction's step "
                          "within few generations); cma = full covariance (pycma's CMA-ES); zo-adam = zeroth-order "
                          "gradient estimate + Adam", choices=OPTIMIZERS, group="search")
    generations: int = _opt(100, "ES generations to run (each evaluates the whole population)", lo=0,
                            hi=100000, group="train", advanced=False)
    popsize: int = _opt(16, "candidates per generation", lo=2, hi=4096, group="train")
    sigma: float = _opt(0.5, "initial step size in coefficient space", lo=1e-6, hi=100.0, group="train")
    samples_per_candidate: int = _opt(8, "(image, timestep, noise) draws that score each candidate; shared "
                                      "by all candidates of a generation", lo=1, hi=512, group="train")
    timestep_min: int = _opt(0, "lowest diffusion timestep drawn (0..999)", lo=0, hi=999, group="train")
    timestep_max: int = _opt(999, "highest diffusion timestep drawn (0..999)", lo=0, hi=999, group="train")
    templates: str = _opt("object", "prompt templates: object, style, or captions from .txt files beside the "
                          "images", choices=TEMPLATE_SETS, group="train")
    auto_context: bool = _opt(True, "caption each image with the context phrase the model itself finds most "
                              "likely (e.g. its background), so the token learns the subject, not the scene; the "
                              "denoise-attention init's short list is then scored again on the captioned prompts",
                              group="train")
    context_phrases: str = _opt("", "phrases auto_context may add to an image's prompts, one per line, or the "
                                "path of a text file with one per line; empty = the shipped list", group="train")
    flip: bool = _opt(True, "also train on horizontally flipped images", group="train")
    common_random_numbers: bool = _opt(True, "score every candidate of a generation on the same draw "
                                       "(off only to reproduce the original method)", group="train")
    mirrored: bool = _opt(False, "cma/sep-cma: sample candidates in mirrored pairs (m ± σz) so each pair is "
                          "compared on the same draw", group="search")
    norm_limit: float = _opt(0.0, "cap each vector's norm at this multiple of the largest real token norm "
                             "(0 = no cap)", lo=0.0, hi=100.0, group="search")
    tail_average: float = _opt(0.5, "share of the last generations whose search means are averaged into a "
                               "'tail-mean' final candidate (0 = off)", lo=0.0, hi=1.0,
                               group="search")
    polish_samples: int = _opt(0, "word polish: after the search, also try 0.5, 1 and 2 more of each word the "
                               "search composes (subspace_words) and keep the change only if it lowers the loss on "
                               "this many fixed draws (0 = off)", lo=0, hi=4096,
                               group="search")
    holdout_samples: int = _opt(32, "fixed draws used to pick the final vector (best-ever, mean or tail mean)", lo=1,
                                hi=4096, group="train")
    holdout_every: int = _opt(3, "every N generations score the search mean on the fixed hold-out draw (the one "
                              "that picks the final vector): the loss curve that falls when the token learns, since "
                              "each generation's own losses follow its fresh draw. Each evaluation costs "
                              "holdout_samples rows; 3 adds 8 percent to the default run's denoiser rows (BENCHMARKS.md) "
                              "(0 = off)", lo=0, hi=100000, group="progress")
    early_stop: int = _opt(0, "stop when the hold-out loss has not improved for this many evaluations in a row "
                           "(0 = run every generation; needs holdout_every)", lo=0, hi=100000, group="progress")
    preview_every: int = _opt(0, "every N generations sample the current search mean with a fixed seed: "
                              "\"a photo of <*>\" and preview_prompt (0 = off)", lo=0, hi=100000, group="progress")
    preview_prompt: str = _opt("a photo of <*> on a green background", "second preview prompt: puts the token "
                               "somewhere its images never showed it (<*> is the token)", group="progress")
    seed: int = _opt(0, "seed for every random draw of the run", lo=0, hi=2**31 - 1, group="train", advanced=False)
    batch_rows: int = _opt(0, "max rows per denoiser call (0 = let the backend decide)", lo=0, hi=65536,
                           group="device")
    checkpoint_every: int = _opt(10, "save the run state every N generations (CLI)", lo=0, hi=100000,
                                 group="device")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def optimiser_dim_per_encoder(self) -> int:
        return self.num_vectors * self.subspace_dim

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InversionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)


def field_specs() -> list[dataclasses.Field]:
    """The config's fields with their metadata, in declaration order (used to build UIs)."""
    return list(dataclasses.fields(InversionConfig))


def validate(cfg: InversionConfig) -> None:
    for f in dataclasses.fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata
        expected = type(f.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(cfg, f.name, float(value))
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{f.name}={value!r} must be a {expected.__name__}")
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{f.name}={value!r} is not one of {list(meta['choices'])}")
        if meta.get("lo") is not None and value < meta["lo"]:
            raise ConfigError(f"{f.name}={value!r} is below its minimum {meta['lo']}")
        if meta.get("hi") is not None and value > meta["hi"]:
            raise ConfigError(f"{f.name}={value!r} is above its maximum {meta['hi']}")
    if cfg.timestep_min > cfg.timestep_max:
        raise ConfigError(f"timestep_min={cfg.timestep_min} > timestep_max={cfg.timestep_max}; swap them")
    if cfg.init_sum == 1:
        raise ConfigError("init_sum=1 sums a one-word phrase; use 0 (the softmax mixture) or 2 or more words")
    if cfg.init_sum and (cfg.num_vectors > 1 or cfg.init_mode != "denoise-attention"):
        raise ConfigError(f"init_sum={cfg.init_sum} builds one vector from words the denoise-attention init scores; "
                          "set num_vectors=1 and init_mode=denoise-attention, or init_sum=0 (with several vectors "
                          "each vector already starts as one word of the phrase)")
    if cfg.init_mode == "file" and not cfg.init_file:
        raise ConfigError("init_mode='file' needs init_file (path of an embedding file)")
    if cfg.init_mode == "clip-attention" and not cfg.init_clip_model:
        raise ConfigError("init_mode='clip-attention' needs init_clip_model (a local CLIP model folder)")
    if cfg.mirrored and cfg.optimizer == "zo-adam":
        raise ConfigError("mirrored=True applies to cma/sep-cma; zo-adam already samples in ± pairs "
                          "(turn mirrored off or pick another optimizer)")
    if cfg.early_stop and not cfg.holdout_every:
        raise ConfigError(f"early_stop={cfg.early_stop} watches the hold-out loss, which holdout_every=0 turns off; "
                          "set holdout_every (e.g. 3) or early_stop=0")
    if cfg.preview_prompt.count("<*>") != 1:
        raise ConfigError(f"preview_prompt={cfg.preview_prompt!r} must contain the token slot <*> once, e.g. "
                          "'a photo of <*> on a green background'")
    if not cfg.token.strip():
        raise ConfigError("token is empty; give the new word a name such as 'my-cat'")
