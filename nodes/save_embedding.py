"""GFTI Save Embedding: pick the final vector (best-ever, the search mean or its tail average, re-scored on a
held-out draw) and write it into ComfyUI's embeddings folder, usable at once as `embedding:<name>` in any prompt."""
from __future__ import annotations

from ..gfti_core.engine import describe_choice
from ..gfti_core.errors import GFTIError
from ..gfti_core.finish import DEFAULT_FORMAT, Target, finish_run
from ..gfti_core.formats import FORMAT_SUFFIXES, FORMATS
from ..gfti_core.safe_io import display_path, resolve_inside
from .host import embeddings_folder
from .inversion import INVERSION_TYPE

AUTO = "auto"
OVERWRITE = ("same run only", "always", "never")
_HOST_SUFFIXES = (".safetensors", ".pt", ".bin")  # the order ComfyUI tries for embedding:<name>


class GFTISaveEmbedding:
    DESCRIPTION = "Writes the learned word into models/embeddings; use it in prompts as embedding:<name>."
    CATEGORY = "GFTI"
    FUNCTION = "execute"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt_word",)
    OUTPUT_TOOLTIPS = ("'embedding:<name>', to put into prompts",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inversion": (INVERSION_TYPE, {"tooltip": "the run to save (after one or more ES steps)"}),
            "name": ("STRING", {"default": "", "tooltip": "file name without extension; empty = the run's token. "
                                "Letters, digits, '-' and '_' are safe everywhere"}),
            "format": ([AUTO, *FORMATS], {"default": AUTO, "tooltip": "auto: safetensors (loads in ComfyUI, A1111, "
                                          "Forge and diffusers, and cannot carry code as a .pt pickle can)"}),
            "overwrite": (list(OVERWRITE), {"default": OVERWRITE[0], "tooltip": "same run only: replace a file only "
                                            "if this run wrote it (re-queueing updates it); always; never"}),
        }}

    def execute(self, inversion, name, format, overwrite):
        state = inversion.state
        stem = name.strip() or state.config.token
        fmt = _format(format)
        path = resolve_inside(embeddings_folder(), stem, FORMAT_SUFFIXES[fmt])
        _refuse_shadowing(path, stem)
        # The run's own file may be replaced unless the user said never; a state or chart file would show up in
        # ComfyUI's embeddings list, so only the embedding goes into that folder.
        run_id = "" if overwrite == "never" else inversion.run_id
        done = finish_run(state, inversion.backend, Target(path, fmt, overwrite == "always", "comfyui", run_id))
        word = f"embedding:{stem}"
        return {"ui": {"text": [f"{word}  ({describe_choice(done.choice)}, generation {state.generation})"]},
                "result": (word,)}


def _format(choice: str) -> str:
    return DEFAULT_FORMAT if choice == AUTO else choice


def _refuse_shadowing(path, stem: str) -> None:
    """ComfyUI resolves embedding:<name> by trying .safetensors, .pt, .bin in turn: another file with the same
    stem would be loaded instead of (or in place of) ours."""
    for suffix in _HOST_SUFFIXES:
        other = path.with_name(stem + suffix)
        if other != path and other.exists():
            raise GFTIError(f"{display_path(other)} already exists and ComfyUI would mix it up with "
                            f"{path.name} for embedding:{stem}; delete it or choose another name")
