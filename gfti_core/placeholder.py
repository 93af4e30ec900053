"""A placeholder word for tokenizers that know none of the usual rare words.

The learned token sits where the prompt holds a placeholder word (`backend.PLACEHOLDER_WORDS` first: rare words
that are one token in CLIP's vocabulary). A model with a small vocabulary of its own (one merged token per word of
a small world) may know none of them; then any whole-word token serves, as long as no prompt GFTI writes
contains it, because every occurrence of the placeholder's id receives the learned vectors.
"""
from __future__ import annotations

import re
from importlib import resources
from typing import Iterable, Mapping

from .templates import OBJECT_TEMPLATES, STYLE_TEMPLATES

_WORD_END = "</w>"  # CLIP-BPE marks a token that ends a word; only such a token can stand alone in a prompt


def words_in_use() -> set[str]:
    """Every word of GFTI's templates and shipped phrase and word lists, lower case."""
    text = " ".join(OBJECT_TEMPLATES + STYLE_TEMPLATES)
    data = resources.files(__package__) / "data"
    for name in ("context_phrases.txt", "concept_words.txt"):
        text += " " + (data / name).read_text(encoding="utf-8")
    return set(re.findall(r"[^\W\d_]+", text.lower()))


def spare_words(vocabulary: Mapping[str, int], avoid: Iterable[str] = ()) -> list[str]:
    """Whole-word tokens of a CLIP-BPE vocabulary (token -> id) that no GFTI prompt uses, rarest first (BPE gives
    later merges higher ids). Letters only, at least two: a single letter could be an article."""
    used = words_in_use() | {w.lower() for w in avoid}
    words = [(i, t[:-len(_WORD_END)]) for t, i in vocabulary.items() if t.endswith(_WORD_END)]
    return [w for _, w in sorted(words, reverse=True) if len(w) > 1 and w.isalpha() and w.lower() not in used]
