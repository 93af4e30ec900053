"""`gfti`'s command line arguments: the parser, and the run config read back from it.

Every `gfti train` option that describes the run comes from `InversionConfig`'s fields (name, type, help,
bounds, choices), so the CLI, the ComfyUI nodes and the A1111 tab can never disagree about them. The commands
(cli_commands.py, batch.py) read their arguments through this module; cli.py only dispatches.
"""
from __future__ import annotations

import argparse
import dataclasses

from .config import InversionConfig, field_specs


def _add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    for f in field_specs():
        if f.name in skip:
            continue
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        bounds = "" if meta["lo"] is None else f" [{meta['lo']:g}..{meta['hi']:g}]"
        help_text = f"{meta['help']}{bounds} (default: {f.default!r})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=type(f.default), choices=meta["choices"], default=None,
                                help=help_text, metavar=None if meta["choices"] else f.name.upper())


def config_from_args(args: argparse.Namespace, base: InversionConfig | None = None) -> InversionConfig:
    """Flags the user gave override `base` (the defaults, or a resumed run's config)."""
    given = given_config(args)
    return dataclasses.replace(base, **given) if base else InversionConfig(**given)


def given_config(args: argparse.Namespace) -> dict:
    """The config fields the user gave as flags (the rest keep their defaults, or a resumed run's values)."""
    return {f.name: getattr(args, f.name) for f in field_specs() if getattr(args, f.name, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gfti", description="Gradient-free textual inversion (forward "
                                     "passes only) for Stable Diffusion models on local disk.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="learn an embedding from a folder of images")
    train.add_argument("--images", required=True, help="folder with 3-20 images (+ optional .txt captions)")
    train.add_argument("--out", required=True, help="embedding file to write (.safetensors / .pt)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    train.add_argument("--resume", help="run-state file of an earlier run to continue")
    train.add_argument("--state", help="where to keep the run state (default: <out>.state.safetensors)")
    _add_run_flags(train)
    _add_config_flags(train)

    sample = sub.add_parser("sample", help="generate images with an embedding file")
    sample.add_argument("--model", required=True)
    sample.add_argument("--model-config")
    sample.add_argument("--embedding", required=True, help="embedding file (GFTI's or a peer's)")
    sample.add_argument("--prompt", required=True, help="prompt containing <token> (the file's token)")
    sample.add_argument("--out", required=True, help="PNG grid to write")
    sample.add_argument("--num-images", type=int, default=4)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--steps", type=int, default=20)
    sample.add_argument("--guidance", type=float, default=4.0)
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    sample.add_argument("--overwrite", action="store_true")

    info = sub.add_parser("info", help="describe an embedding or run-state file")
    info.add_argument("file")

    batch = sub.add_parser("batch", help="learn many concepts listed in a CSV manifest, in parallel on Ray "
                           "(pip install 'gfti[batch]'; docs/batch.md)")
    _add_batch_flags(batch)
    _add_run_flags(batch)
    batch.set_defaults(device=None)  # cuda when --gpus-per-task gives each concept a GPU, else cpu
    _add_config_flags(batch, skip=("token",))  # defaults for every concept; the manifest's cells win
    return parser


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """How a run loads its model and writes its files: the same for `gfti train` and each `gfti batch` concept."""
    parser.add_argument("--model", required=True, help="diffusers folder, .safetensors checkpoint, or 'toy'")
    parser.add_argument("--model-config", help="local diffusers folder describing a single-file checkpoint")
    parser.add_argument("--format", default="safetensors", choices=("safetensors", "diffusers", "a1111-pt"))
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--preview", type=int, default=0, metavar="N",
                        help="also write a grid of N images with the learned token next to the init")
    parser.add_argument("--allow-existing-token", action="store_true",
                        help="allow a token name that is already a word of the model's vocabulary")


def _add_batch_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="CSV with the columns images,token and optionally any option below "
                        "(e.g. generations, popsize), one concept per row")
    parser.add_argument("--out-dir", required=True, help="folder for every concept's <token>.safetensors, "
                        "chart and run state; re-running skips finished concepts and resumes the others")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="concepts trained at once (default: 1 on a local Ray; with --address as many "
                        "as the cluster's resources allow)")
    parser.add_argument("--gpus-per-task", type=float, default=0.0, metavar="F",
                        help="GPUs each concept reserves, 0 < F <= 1 (0.5: two concepts share a GPU; "
                        "default 0: CPU)")
    parser.add_argument("--address", help="join a running Ray cluster (e.g. HEAD:6379 after `ray start "
                        "--head` there); default: start a local Ray in this process")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="times a concept whose worker died is restarted (from its last checkpoint)")
