"""Word-level tokenizer for the toy world, packaged as a transformers fast tokenizer.

One word = one token, so textual inversion on the toy model mirrors SD1: a concept
word maps to one 768-d input embedding.
"""
from __future__ import annotations

import logging
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from .scenes import BACKGROUNDS, COLOURS, SHAPES

log = logging.getLogger(__name__)

BOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "<unk>"
# Order matters: EOS must not be id 2, or transformers' CLIPTextModel falls back to
# its legacy "argmax of input_ids" pooling instead of looking for eos_token_id.
SPECIAL_TOKENS = (BOS, EOS, UNK)
# Toy captions are at most 12 tokens; 24 leaves room for multi-vector tokens and context phrases.
# Shorter than SD's 77: the text encoder is most of a training step's cost at 77 (measured 1.6x).
MODEL_MAX_LENGTH = 24
# Rare words that never occur in training captions: free slots for placeholders.
PLACEHOLDER_WORDS = ("sks", "zwx", "xqz")
FUNCTION_WORDS = (
    "a", "an", "the", "on", "of", "in", "with", "and", "background", "photo", "picture",
    "rendering", "image", "shape", "object", "front", "colour", "color", "big", "small",
    "large", "tiny", "left", "right", "top", "bottom", "center", "middle", ",", ".",
)
PACKAGE_DIR = Path(__file__).resolve().parent
EXTRA_WORDS_FILE = PACKAGE_DIR / "extra_words.txt"
CONCEPT_WORDS_FILE = PACKAGE_DIR.parent / "gfti_core" / "data" / "concept_words.txt"


def _read_words(path: Path) -> list[str]:
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().lower()
        if line and not line.startswith("#"):
            words.extend(line.split())
    return words


def toy_words() -> list[str]:
    """Every word a training caption can contain."""
    return list(FUNCTION_WORDS) + list(SHAPES) + list(COLOURS) + list(BACKGROUNDS)


def build_vocab(words: list[str] | None = None) -> dict[str, int]:
    """Special tokens, the world's caption words (default: this world's), placeholders, then concept (or
    extra) words; no duplicates."""
    source = CONCEPT_WORDS_FILE if CONCEPT_WORDS_FILE.exists() else EXTRA_WORDS_FILE
    log.info("extra vocabulary from %s", source)
    vocab: dict[str, int] = {}
    for word in [*SPECIAL_TOKENS, *(words or toy_words()), *PLACEHOLDER_WORDS, *_read_words(source)]:
        vocab.setdefault(word, len(vocab))
    return vocab


def build_tokenizer(vocab: dict[str, int] | None = None,
                    max_length: int = MODEL_MAX_LENGTH) -> PreTrainedTokenizerFast:
    vocab = vocab or build_vocab()
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Punctuation split so "star," still yields "star"; added tokens (e.g. "<tok>") are
    # matched before pre-tokenisation, so placeholders with brackets stay whole.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        pad_token=EOS,  # like CLIP: pad with endoftext
        model_max_length=max_length, padding_side="right")
