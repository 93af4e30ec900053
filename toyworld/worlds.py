"""The measuring worlds, described by one record each, so training, the classifier and the evaluation are
written once and run on either world.

- `shapes` (world 1, `toyworld/model`): 6 shapes x 8 colours, 64 px, sentence captions, 768-d text.
- `tags` (world 2, `toyworld/world2/model`): 5 other shapes x 7 other colours, 32 px, tag captions
  ("magenta, triangle, black background"), 512-d text. Built unlike world 1 on purpose: defaults chosen on
  one are validated on the other.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
import numpy as np

PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class World:
    name: str
    image_size: int
    text_width: int
    max_length: int
    model_dir: Path
    classifier_weights: Path
    caption_words: tuple[str, ...]        # every word a training caption can contain
    heads: dict[str, list[str]]           # what the classifier reads off an image
    held_out: tuple[tuple[str, str], ...]  # the benchmark's (shape, colour) concepts
    training_combos: tuple[tuple[str, str], ...]
    new_context: str                      # a background the concepts' example images never show
    modules: str                          # package holding scenes/data/concepts
    init_words: Path                      # the world's own word list for GFTI's init (`--init-words`)
    context_phrases: Path                 # and its context phrases (`--context-phrases`)

    def module(self, name: str):
        return importlib.import_module(f"{self.modules}.{name}")

    def prompt(self, shape: str, colour: str, background: str | None = None) -> str:
        """The world's own words for a scene, in its caption style."""
        if self.name == "tags":
            return self.module("scenes").tags(colour, shape, background)
        from .scenes import article
        suffix = f" on {article(background)} {background} background" if background else ""
        return f"a photo of {article(colour)} {colour} {shape}{suffix}"

    def subject_prompt(self, subject: str, background: str | None = None) -> str:
        """A prompt about `subject` (a token or words) in the world's caption style."""
        if self.name == "tags":
            return ", ".join([subject] + ([f"{background} background"] if background else []))
        from .scenes import article
        return f"a photo of {subject}" + (f" on {article(background)} {background} background" if background else "")

    def sample_scene(self, rng: np.random.Generator):
        return self.module("scenes").sample_scene(rng)

    def render(self, scene):
        scenes = self.module("scenes")
        return scenes.to_array(scenes.render_scene(scene))


def _shapes() -> World:
    from .concepts import HELD_OUT_CONCEPTS
    from .scenes import BACKGROUNDS, COLOURS, SHAPES
    from .tokenizer import FUNCTION_WORDS, MODEL_MAX_LENGTH
    return World("shapes", 64, 768, MODEL_MAX_LENGTH, PACKAGE / "model", PACKAGE / "classifier.safetensors",
                 (*FUNCTION_WORDS, *SHAPES, *COLOURS, *BACKGROUNDS),
                 {"shape": list(SHAPES), "colour": list(COLOURS), "background": list(BACKGROUNDS)},
                 HELD_OUT_CONCEPTS, (("circle", "red"), ("square", "green"), ("triangle", "yellow"),
                                     ("star", "blue"), ("ring", "white"), ("cross", "cyan")),
                 "green", "toyworld", PACKAGE / "concept_words.txt", PACKAGE / "context_phrases.txt")


def _tags() -> World:
    from .world2 import concepts
    from .world2.scenes import BACKGROUNDS, COLOURS, SHAPES, STYLE_TAGS
    return World("tags", 32, 512, 12, PACKAGE / "world2" / "model", PACKAGE / "world2" / "classifier.safetensors",
                 (",", "background", *STYLE_TAGS, *SHAPES, *COLOURS, *BACKGROUNDS),
                 {"shape": list(SHAPES), "colour": list(COLOURS), "background": list(BACKGROUNDS)},
                 concepts.HELD_OUT_CONCEPTS, concepts.TRAINING_COMBOS, concepts.NEW_CONTEXT, "toyworld.world2",
                 PACKAGE / "world2" / "concept_words.txt", PACKAGE / "world2" / "context_phrases.txt")


WORLDS = {"shapes": _shapes, "tags": _tags}


def get_world(name: str = "shapes") -> World:
    try:
        return WORLDS[name]()
    except KeyError:
        raise ValueError(f"unknown world {name!r}; choose one of {sorted(WORLDS)}") from None
