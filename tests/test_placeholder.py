"""The placeholder works with any tokenizer: a CLIP-BPE tokenizer with a small vocabulary of its own (one merged
token per word of a small world, none of the usual rare words) still trains, with a word no template uses."""
from __future__ import annotations

import json

import pytest
import torch

from gfti_core.backend import PLACEHOLDER, PLACEHOLDER_WORDS, choose_placeholder
from gfti_core.placeholder import spare_words, words_in_use

WORLD = ("red", "blue", "pink", "circle", "square", "star", "ball", "cube")


def small_world_tokenizer(folder):
    """CLIP's byte symbols plus one merged token per world word, written as vocab.json + merges.txt."""
    from transformers import CLIPTokenizer

    from gfti_core.tiny import _BYTES

    vocab, merges = {}, []
    for sym in _BYTES + [b + "</w>" for b in _BYTES]:
        vocab.setdefault(sym, len(vocab))
    for word in WORLD:  # left-to-right merges: r e -> re, re d</w> -> red</w>
        prefix = word[0]
        for i, ch in enumerate(word[1:], 1):
            piece = ch + "</w>" if i == len(word) - 1 else ch
            merges.append(f"{prefix} {piece}")
            prefix += piece
            vocab.setdefault(prefix, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


@pytest.fixture(scope="module")
def small_world_pipeline(tmp_path_factory):
    from gfti_core.tiny import _text_encoder, tiny_pipeline

    pipe = tiny_pipeline("sd1")
    pipe.tokenizer = small_world_tokenizer(tmp_path_factory.mktemp("tok"))
    pipe.text_encoder = _text_encoder(pipe.tokenizer, 32)
    return pipe


def test_the_tokenizer_has_none_of_the_usual_words_but_its_own(small_world_pipeline):
    tok = small_world_pipeline.tokenizer
    assert all(len(tok(w, add_special_tokens=False).input_ids) > 1 for w in PLACEHOLDER_WORDS)
    assert all(len(tok(w, add_special_tokens=False).input_ids) == 1 for w in WORLD)


def test_spare_words_skip_every_word_a_gfti_prompt_uses():
    used = words_in_use()
    assert {"photo", "style", "background"} <= used
    vocab = {"a</w>": 5, "photo</w>": 9, "blue</w>": 7, "cube</w>": 8, "cu": 6, "zorp</w>": 3}
    assert spare_words(vocab) == [w for w in ("cube", "blue", "zorp") if w not in used]
    assert spare_words(vocab, avoid=["Cube"])[0] != "cube"


def test_no_single_token_word_is_a_clear_error():
    with pytest.raises(ValueError, match="single token"):
        choose_placeholder(lambda text, enc: [1, 2], ["clip_l"], ["zorp"])


def test_a_small_vocabulary_model_trains(small_world_pipeline):
    from gfti_core.backends.diffusers_backend import DiffusersBackend
    from gfti_core.config import InversionConfig
    from gfti_core.engine import final_vectors, run_generations, start_run
    from gfti_core.tiny import tiny_images

    backend = DiffusersBackend(small_world_pipeline)
    word = backend.placeholder
    assert word not in PLACEHOLDER_WORDS and word not in words_in_use() and word in WORLD
    assert len(backend.word_ids(word, "clip_l")) == 1
    # the learned vectors reach the text encoder: its output differs exactly where they were put
    vec = {"clip_l": torch.randn(1, 1, 32)}
    with_token = backend.encode_text([f"a photo of {PLACEHOLDER}"], vec)
    other = backend.encode_text([f"a photo of {PLACEHOLDER}"], {"clip_l": vec["clip_l"] + 1})
    assert not torch.equal(with_token["hidden"], other["hidden"])
    cfg = InversionConfig(token="gfti-small", generations=2, popsize=4, subspace_dim=4, samples_per_candidate=2,
                          holdout_samples=2, init_mode="word", init_text="star", auto_context=False)
    state = run_generations(start_run(backend, cfg, tiny_images(3)), backend, cfg.generations)
    vectors, _ = final_vectors(state, backend, polish_words=False)
    assert state.generation == 2 and vectors["clip_l"].shape == (1, 32) and torch.isfinite(vectors["clip_l"]).all()
