"""GFTI Save Embedding: pick the final vector (best-ever, the search mean or its tail average, re-scored on a
held-out draw) and write it into ComfyUI's embeddings folder, usable at once as `embedding:<name>` in any prompt."""
from __future__ import annotations

from ..gfti_core.engine import describe_choice, final_vectors
from ..gfti_core.errors import EmbeddingFileError, GFTIError, OutputExistsError
from ..gfti_core.formats import FORMAT_SUFFIXES, FORMATS, Embedding, read_embedding, write_embedding
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
            "format": ([AUTO, *FORMATS], {"default": AUTO, "tooltip": "auto: A1111 .pt for SD1/SD2, clip_l+clip_g "
                                          "safetensors for SDXL (both load in ComfyUI, A1111, Forge and diffusers)"}),
            "overwrite": (list(OVERWRITE), {"default": OVERWRITE[0], "tooltip": "same run only: replace a file only "
                                            "if this run wrote it (re-queueing updates it); always; never"}),
        }}

    def execute(self, inversion, name, format, overwrite):
        state = inversion.state
        stem = name.strip() or state.config.token
        fmt = _format(format, state.family)
        path = resolve_inside(embeddings_folder(), stem, FORMAT_SUFFIXES[fmt])
        _refuse_shadowing(path, stem)
        vectors, choice = final_vectors(state, inversion.backend)
        emb = Embedding(vectors, state.config.token, _metadata(inversion, choice))
        write_embedding(path, emb, fmt, overwrite=_may_overwrite(path, overwrite, inversion.run_id))
        word = f"embedding:{stem}"
        return {"ui": {"text": [f"{word}  ({describe_choice(choice)}, generation {state.generation})"]},
                "result": (word,)}


def _format(choice: str, family: str) -> str:
    if choice != AUTO:
        return choice
    return "safetensors" if family == "sdxl" else "a1111-pt"


def _refuse_shadowing(path, stem: str) -> None:
    """ComfyUI resolves embedding:<name> by trying .safetensors, .pt, .bin in turn: another file with the same
    stem would be loaded instead of (or in place of) ours."""
    for suffix in _HOST_SUFFIXES:
        other = path.with_name(stem + suffix)
        if other != path and other.exists():
            raise GFTIError(f"{display_path(other)} already exists and ComfyUI would mix it up with "
                            f"{path.name} for embedding:{stem}; delete it or choose another name")


def _may_overwrite(path, mode: str, run_id: str) -> bool:
    if mode != OVERWRITE[0] or not path.exists():
        return mode == "always"
    try:
        owner = read_embedding(path).metadata.get("gfti.run_id")
    except EmbeddingFileError:
        owner = None
    if owner != run_id:
        raise OutputExistsError(f"{display_path(path)} exists and was not written by this run; choose another name "
                                "or set overwrite to 'always'")
    return True


def _metadata(inversion, choice: dict) -> dict[str, str]:
    s = inversion.state
    return {k: str(v) for k, v in {
        "gfti.steps": s.generation, "gfti.evaluations": s.forward_rows, "gfti.best_loss": f"{s.best_loss:.6g}",
        "gfti.seed": s.config.seed, "gfti.model_name": s.model_name, "gfti.config": s.config.to_json(),
        "gfti.init": s.init_info.get("mode"), "gfti.final": describe_choice(choice), "gfti.run_id": inversion.run_id,
        "gfti.host": "comfyui"}.items()}
