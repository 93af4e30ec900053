"""Every init mode runs on a tiny real pipeline and gives vectors of the right shape and a sane norm."""
import pytest
import torch

from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.config import ConfigError, InversionConfig
from gfti_core.engine import start_run
from gfti_core.formats import Embedding, write_embedding
from gfti_core.init_vectors import word_vector
from gfti_core.tiny import tiny_images, tiny_tokenizer


def _cfg(**kw):
    return InversionConfig(subspace_dim=4, popsize=4, samples_per_candidate=2, init_samples=1, **kw)


@pytest.fixture
def words(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# test list\ncat\ndog\nred car\nzebra\n")
    return str(path)


def _check(state, n=1):
    v = state.subspace.origin["clip_l"]
    assert v.shape == (n, 32) and torch.isfinite(v).all()
    assert 0.1 < float(v.norm(dim=1).mean()) < 10


def test_word_init(tiny_sd1):
    _check(start_run(DiffusersBackend(tiny_sd1), _cfg(init_mode="word", init_text="cat", num_vectors=2),
                     tiny_images(2)), n=2)


def test_word_init_unknown_word_is_a_clear_error(tiny_sd1):
    with pytest.raises(ConfigError, match="not in the model's vocabulary"):
        start_run(DiffusersBackend(tiny_sd1), _cfg(init_mode="word", init_text="   "), tiny_images(2))


def test_denoise_attention_init_reports_weights_and_entropy(tiny_sd1, words):
    state = start_run(DiffusersBackend(tiny_sd1), _cfg(init_words=words, init_top_k=3), tiny_images(2))
    _check(state)
    info = state.init_info
    assert info["mode"] == "denoise-attention" and info["words_scored"] == 4
    assert abs(sum(t["weight"] for t in info["top"]) - 1) < 1e-3 and len(info["top"]) == 3
    assert 0 <= info["entropy_nats"] <= info["max_entropy_nats"] + 1e-6
    assert info["init_forward_rows"] > 0


def test_file_init_starts_from_an_existing_embedding(tiny_sd1, tmp_path):
    vec = torch.randn(2, 32) * 0.5
    path = write_embedding(tmp_path / "prev.safetensors", Embedding({"clip_l": vec}, "prev"))
    state = start_run(DiffusersBackend(tiny_sd1), _cfg(init_mode="file", init_file=str(path), num_vectors=2),
                      tiny_images(2))
    assert torch.allclose(state.subspace.origin["clip_l"], vec)


def test_file_init_with_wrong_vector_count_says_how_to_fix(tiny_sd1, tmp_path):
    path = write_embedding(tmp_path / "prev.safetensors", Embedding({"clip_l": torch.randn(2, 32)}, "prev"))
    with pytest.raises(ConfigError, match="num_vectors=2"):
        start_run(DiffusersBackend(tiny_sd1), _cfg(init_mode="file", init_file=str(path)), tiny_images(2))


def _tiny_clip_model(folder):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    tok = tiny_tokenizer(folder)
    tok.save_pretrained(folder)
    text = CLIPTextConfig(vocab_size=len(tok.get_vocab()), hidden_size=32, intermediate_size=37,
                          num_hidden_layers=1, num_attention_heads=2, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)).save_pretrained(folder)


def test_clip_attention_init_with_a_local_clip_model(tiny_sd1, tmp_path, words):
    _tiny_clip_model(tmp_path / "clip")
    state = start_run(DiffusersBackend(tiny_sd1), _cfg(init_mode="clip-attention", init_clip_model=str(tmp_path / "clip"),
                                                       init_words=words, clip_temperature=0.1), tiny_images(2))
    _check(state)
    weights = [t["weight"] for t in state.init_info["top"]]
    assert abs(sum(weights) - 1) < 1e-3
    assert state.init_info["subspace_words"][0] == state.init_info["top"][0]["word"]  # the search's first row


def test_clip_attention_without_a_model_folder_is_a_clear_error(tiny_sd1, tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        start_run(DiffusersBackend(tiny_sd1), _cfg(init_mode="clip-attention", init_clip_model=str(tmp_path / "nope")),
                  tiny_images(2))


def test_describe_start_names_the_mixed_words_and_each_images_context():
    from gfti_core.init_vectors import describe_start

    info = {"mode": "denoise-attention", "top": [{"word": "star", "weight": 0.61, "loss": 0.1},
                                                 {"word": "purple", "weight": 0.39, "loss": 0.2}],
            "context": ["on a gray background", ""]}
    assert describe_start(info) == ["start vector: star 0.61, purple 0.39",
                                    "auto context: image 1: on a gray background; image 2: (own caption)"]
    assert describe_start({"mode": "word", "text": "cat"}) == ["start vector: word cat"]
    assert describe_start({**info, "sequence": ["purple", "star"]})[0] == \
        "start vectors: purple star (one word per vector)"
    assert describe_start({"mode": "word", "subspace_words": ["star", "purple"]})[-1] == \
        "search composes: star, purple (+ PCA directions)"


def test_the_search_space_starts_with_the_best_scoring_words(tiny_sd1, words):
    backend = DiffusersBackend(tiny_sd1)
    state = start_run(backend, _cfg(init_words=words, subspace_words=2), tiny_images(2))
    chosen = state.init_info["subspace_words"]
    assert chosen == state.init_info["ranked_words"][:2] and len(set(chosen)) == 2
    tables = {"clip_l": backend.token_table("clip_l")}
    for row, word in zip(state.subspace.bases["clip_l"][:2], chosen):  # the init's own word vectors, unscaled
        torch.testing.assert_close(row, word_vector(backend, tables, word, "clip_l"))


def test_the_reported_search_words_are_capped_by_the_subspace_size(tiny_sd1, words):
    import dataclasses

    cfg = dataclasses.replace(_cfg(init_words=words, subspace_words=16), subspace_dim=3)  # 4 words ranked
    state = start_run(DiffusersBackend(tiny_sd1), cfg, tiny_images(2))
    assert len(state.init_info["ranked_words"]) == 4
    assert len(state.init_info["subspace_words"]) == 3 == state.subspace.bases["clip_l"].shape[0]


def test_word_init_searches_pca_directions_only(tiny_sd1):
    state = start_run(DiffusersBackend(tiny_sd1), _cfg(init_mode="word", init_text="cat"), tiny_images(2))
    assert "subspace_words" not in state.init_info and state.subspace.bases["clip_l"].shape[0] == 4
