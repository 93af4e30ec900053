"""The work behind `gfti train | sample | info` (argument parsing lives in cli.py)."""
from __future__ import annotations

import logging
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from .backend import PLACEHOLDER
from .chart import image_grid, tensor_to_pil
from .engine import RunState, run_generations, start_run
from .errors import GFTIError, StateFileError
from .finish import Target, finish_run, may_replace, output_path
from .formats import describe, read_embedding
from .holdout import describe_early_stop, describe_holdout, stalled
from .previews import backend_sampler, timeline
from .init_vectors import describe_start
from .loading import named_model
from .safe_io import atomic_write
from .state_io import is_state_file, load_state, save_state

log = logging.getLogger("gfti")


@contextmanager
def stop_on_ctrl_c() -> Iterator[list[bool]]:
    """First Ctrl-C stops the run at the next check (mid-generation work is dropped, the last complete
    generation is saved); a second one aborts at once."""
    flag = [False]

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        log.warning("stopping: the last complete generation is kept and saved (Ctrl-C again to abort at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _backend(args):
    from .backends.diffusers_backend import DiffusersBackend
    from .loading import load_pipeline

    pipe, name, digest = load_pipeline(args.model, config_dir=args.model_config, device=args.device,
                                       dtype=args.dtype)
    backend = DiffusersBackend(pipe, model_name=name)
    backend.model_hash = digest
    return backend, pipe


def _check_token(backend, token: str, allow: bool) -> None:
    for enc in backend.encoders:
        ids = backend.word_ids(token, enc.name)
        if ids is not None and len(ids) == 1:
            message = (f"token {token!r} is already a word in this model's vocabulary; files are used by name, "
                       "so prefer a rare string like 'sks-" + token + "'")
            if not allow:
                log.warning("%s (pass --allow-existing-token to silence)", message)
            return


def _load_images(folder: str, backend):
    from .images import load_image_folder

    pipe = backend.pipe
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return load_image_folder(folder, resolution)  # it logs its own warnings (upscaled, animated, ...)


def _new_or_resumed(args, backend) -> RunState:
    from .cli_args import config_from_args

    if args.resume:
        state = load_state(args.resume)
        if state.encoders != {e.name: e.width for e in backend.encoders}:
            raise StateFileError(f"{args.resume} was made for a {state.family} model {state.encoders}; this model "
                                 f"is {backend.family}: resume with the model the run started on")
        cfg = config_from_args(args, state.config)
        log.info("resuming at generation %d of %d", state.generation, cfg.generations)
        return state if cfg == state.config else _replace_config(state, cfg)
    named = None if Path(args.model).expanduser().exists() else named_model(args.model)
    if named is not None:  # a named model's own words and backgrounds (the toy world's), as ImageNet's are for photos
        args.init_words = args.init_words or named.init_words or None
        args.context_phrases = args.context_phrases or named.context_phrases or None
    cfg = config_from_args(args)
    _check_token(backend, cfg.token, args.allow_existing_token)
    images = _load_images(args.images, backend)
    captions = images.captions if cfg.templates == "captions" else None
    state = start_run(backend, cfg, images.images, captions, images.masks)
    for line in describe_start(state.init_info):
        log.info("%s", line)
    log.debug("init: %s", state.init_info)
    return state


def _replace_config(state: RunState, cfg) -> RunState:
    from .engine import with_settings

    changed = {k: v for k, v in cfg.__dict__.items() if getattr(state.config, k) != v}
    return with_settings(state, **changed)


def _run(state: RunState, backend, state_path: Path, on_generation=None,
         previews: Path | None = None) -> tuple[RunState, bool]:
    """Run the remaining generations, checkpointing; returns the state and whether the user stopped it."""
    from tqdm import tqdm

    cfg = state.config
    sampler, grids = _preview_sampler(backend, cfg), []
    todo = max(0, cfg.generations - state.generation)
    every = cfg.checkpoint_every or todo or 1
    with stop_on_ctrl_c() as stop, tqdm(total=cfg.generations, initial=state.generation, unit="gen") as bar:
        def report(r):
            bar.update(1)
            if r.holdout_curve:  # the curve that shows learning; a generation's own mean follows its draw
                bar.set_postfix(holdout=f"{r.holdout_curve[-1][1]:.5f}", mean=f"{r.mean:.5f}")
            else:
                bar.set_postfix(best=f"{r.best_ever:.5f}", mean=f"{r.mean:.5f}")
            if r.preview is not None and previews is not None:
                grids.append(r.preview)
                atomic_write(previews, lambda tmp: timeline(grids).save(tmp, format="PNG"), overwrite=True)
            if on_generation:
                on_generation(r)

        save_state(state, state_path)  # before any generation: an unwritable folder fails now, not at the end
        while state.generation < cfg.generations and not stop[0] and not stalled(cfg, state.history):
            saved = state
            try:
                state = run_generations(state, backend, min(every, cfg.generations - state.generation), report,
                                        lambda: stop[0], sampler)
                save_state(state, state_path)
            except GFTIError as exc:  # a diverged model, a full disk: the last checkpoint is still on disk
                raise _kept(exc, saved, state_path) from exc
    if describe_early_stop(cfg, state.history):
        log.info("%s", describe_early_stop(cfg, state.history))
    return state, stop[0]


def _preview_sampler(backend, cfg):
    if not cfg.preview_every:
        return None
    sampler = backend_sampler(backend)
    if sampler is None:
        log.warning("preview_every=%d: this backend cannot generate images; no previews", cfg.preview_every)
    return sampler


def _kept(exc: GFTIError, state: RunState, state_path: Path) -> GFTIError:
    """The same error, also telling where the run is kept (`state` is already saved at `state_path`)."""
    return type(exc)(f"{exc}; the run is kept at generation {state.generation} in {state_path}, continue it with "
                     f"--resume {state_path}")


def _write_outputs(state: RunState, backend, args, out: Path, interrupted: bool) -> tuple[Path, dict]:
    done = finish_run(state, backend, Target(out, args.format, args.overwrite, host="cli", chart=True),
                      interrupted=interrupted)
    log.info("wrote %s and %s", done.path, done.chart)
    if args.preview:
        _write_preview(state, backend, done.embedding.vectors, args.preview,
                       out.with_name(out.stem + ".preview.png"))
    return done.path, done.choice


def _write_preview(state: RunState, backend, vectors, count: int, path: Path) -> None:
    prompt = f"a photo of {PLACEHOLDER}"
    learned = backend.generate(prompt, vectors, num_images=count, seed=state.config.seed)
    init = backend.generate(prompt, state.subspace.origin, num_images=count, seed=state.config.seed)
    grid = image_grid([tensor_to_pil(learned), tensor_to_pil(init)], ["learned token", "initialisation"])
    atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"), overwrite=True)
    log.info("wrote %s", path)


def default_state_path(out: Path) -> Path:
    """Where a run's state is kept unless --state says otherwise: beside its embedding."""
    return out.with_name(out.stem + ".state.safetensors")


def train(args) -> int:
    run_train(args)
    return 0


def run_train(args, on_generation=None) -> tuple[Path, dict]:
    """`gfti train`'s whole run (also each concept of `gfti batch`) → (embedding file, final_vectors' report).
    `on_generation(GenerationReport)` is called after every generation."""
    out = output_path(Target(args.out, args.format, args.overwrite))  # the name written: checked before any work
    backend, _ = _backend(args)
    state = _new_or_resumed(args, backend)
    state_path = Path(args.state or args.resume or default_state_path(out))
    state, interrupted = _run(state, backend, state_path, on_generation, out.with_name(out.stem + ".previews.png"))
    try:
        written = _write_outputs(state, backend, args, out, interrupted)
    except GFTIError as exc:  # read-only or full folder, or another run took the name: the run is not lost
        raise _kept(exc, state, state_path) from exc
    log.info("run state: %s (continue with --resume %s)", state_path, state_path)
    return written


def _token_in_prompt(prompt: str, token: str) -> str:
    for form in (f"<{token}>", token):
        if form in prompt:
            return prompt.replace(form, PLACEHOLDER, 1)
    raise GFTIError(f"the prompt does not contain the embedding's token <{token}>; write it into the prompt, "
                    f"e.g. \"a photo of <{token}>\"")


def sample(args) -> int:
    out = Path(args.out)
    may_replace(out, args.overwrite)
    backend, _ = _backend(args)
    emb = read_embedding(args.embedding, expect={e.name: e.width for e in backend.encoders})
    token = emb.token or Path(args.embedding).stem
    prompt = _token_in_prompt(args.prompt, token)
    vectors = {e.name: emb.vectors[e.name] for e in backend.encoders}
    with torch.no_grad():
        images = backend.generate(prompt, vectors, num_images=args.num_images, seed=args.seed, steps=args.steps,
                                  guidance=args.guidance)
    grid = image_grid([tensor_to_pil(images)])
    atomic_write(out, lambda tmp: grid.save(tmp, format="PNG"), overwrite=args.overwrite)
    log.info("wrote %s", out)
    return 0


def info(args) -> int:
    if is_state_file(args.file):  # a damaged state must be explained as a state, not as a strange embedding
        state = load_state(args.file)
        print(f"GFTI run state: token {state.config.token!r}, {state.family}, generation {state.generation}, "
              f"best loss {state.best_loss:.6g}, {state.forward_rows} denoiser rows")
        print(describe_holdout(state.history))
        return 0
    print(describe(read_embedding(args.file)))
    return 0
