"""Fast tests of the toy world: generator, captions, tokenizer, classifier, shipped pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toyworld import MODEL_DIR
from toyworld.classifier import WEIGHTS
from toyworld.concepts import DEMO_CONCEPT, EXAMPLE_DIR, HELD_OUT_CONCEPTS, concept_images, concept_scenes
from toyworld.data import is_held_out, training_caption, training_specs
from toyworld.scenes import (BACKGROUNDS, COLOURS, SHAPES, caption, render, render_scene,
                             sample_scene, to_array)
from toyworld.tokenizer import PLACEHOLDER_WORDS, build_tokenizer, toy_words


def test_generator_is_deterministic():
    a = render("star", "red", "black", np.random.default_rng(3))
    b = render("star", "red", "black", np.random.default_rng(3))
    c = render("star", "red", "black", np.random.default_rng(4))
    assert a.size == (64, 64) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("shape", SHAPES)
def test_rendered_pixels_match_ground_truth(shape):
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, shapes=(shape,), colours=("yellow",), backgrounds=("navy",))
    px = np.asarray(render_scene(scene)).reshape(-1, 3).astype(int)
    fg, bg = np.array(COLOURS["yellow"]), np.array(BACKGROUNDS["navy"])
    is_fg = np.abs(px - fg).sum(1) < 12
    is_bg = np.abs(px - bg).sum(1) < 12
    assert is_fg.mean() > 0.03, "the shape is visible in its colour"
    assert is_bg.mean() > 0.3, "most of the rest is the background colour"
    assert (is_fg | is_bg).mean() > 0.8, "only antialiased edges are in between"
    # The centre pixel is the shape's colour for every shape except the ring.
    centre = np.asarray(render_scene(scene))[int(scene.cy), int(scene.cx)].astype(int)
    expected = bg if shape == "ring" else fg
    assert np.abs(centre - expected).sum() < 40


def test_sample_scene_excludes_held_out_pairs():
    rng = np.random.default_rng(1)
    pairs = {(s.shape, s.colour) for s in (sample_scene(rng, exclude=HELD_OUT_CONCEPTS) for _ in range(2000))}
    assert not pairs & set(HELD_OUT_CONCEPTS)
    assert not {(s, c) for s, c, _ in training_specs(include_held_out=False)} & set(HELD_OUT_CONCEPTS)


def test_held_out_pairs_are_named_by_two_words_only():
    """v4 captions name every pair, benchmark pairs included ("a purple star ..."), but the vocabulary
    has no single word for a pair: the inverted token must carry shape and colour in one vector."""
    specs = training_specs()
    held = [spec for spec in specs if is_held_out(spec)]
    assert {(s, c) for s, c, _ in held} == set(HELD_OUT_CONCEPTS)
    rng = np.random.default_rng(0)
    for spec in held:
        words = training_caption(spec, rng).split()
        assert spec[0] in words and spec[1] in words, (spec, words)
    vocab = build_tokenizer().get_vocab()
    assert not any(f"{c}-{s}" in vocab or f"{c}{s}" in vocab for s, c in HELD_OUT_CONCEPTS)


def test_partial_captions_never_name_a_held_out_pair_together():
    """The v3 option (`--held-out-captions partial`) still does what it says."""
    rng = np.random.default_rng(0)
    seen_kinds = set()
    for spec in (spec for spec in training_specs() if is_held_out(spec)):
        for _ in range(40):
            words = training_caption(spec, rng, "partial").split()
            assert not (spec[0] in words and spec[1] in words), (spec, words)
            seen_kinds.add((spec[0] in words, spec[1] in words))
    assert seen_kinds == {(True, False), (False, True), (False, False)}


def test_captions():
    scene = sample_scene(np.random.default_rng(2), shapes=("star",), colours=("red",), backgrounds=("black",))
    assert caption(scene) == "a red star on a black background"
    assert caption(scene, with_background=False) == "a red star"
    orange = sample_scene(np.random.default_rng(2), shapes=("ring",), colours=("orange",), backgrounds=("gray",))
    assert caption(orange, with_background=False) == "an orange ring"


def test_concept_images_fixed_and_varied():
    scenes = concept_scenes(DEMO_CONCEPT, n=6)
    assert scenes == concept_scenes(DEMO_CONCEPT, n=6)
    assert len({s.background for s in scenes}) >= 3 and all(s.background != "green" for s in scenes)
    assert len(concept_images(HELD_OUT_CONCEPTS[1], n=5)) == 5
    shipped = sorted(EXAMPLE_DIR.glob("*.png"))
    assert len(shipped) == 6
    assert np.array_equal(np.asarray(concept_images(DEMO_CONCEPT, n=6)[0]), np.asarray(
        __import__("PIL.Image").Image.open(shipped[0]).convert("RGB")))


def test_tokenizer_round_trip():
    tok = build_tokenizer()
    ids = tok("a photo of a Purple star on a green background").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    words = tok.convert_ids_to_tokens(ids[1:-1])
    assert words == "a photo of a purple star on a green background".split()
    for word in toy_words() + list(PLACEHOLDER_WORDS):
        assert tok.convert_tokens_to_ids(word) != tok.unk_token_id, word
        assert len(tok(word, add_special_tokens=False).input_ids) == 1
    assert tok("blorptastic", add_special_tokens=False).input_ids == [tok.unk_token_id]
    assert tok.eos_token_id != 2, "CLIPTextModel would use legacy argmax pooling"
    length = tok.model_max_length
    enc = tok(["a red star"], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    assert enc.input_ids.shape == (1, length) and enc.input_ids[0, -1].item() == tok.eos_token_id
    longest = max(len(tok(f"a rendering of an orange triangle on a {b} background").input_ids) for b in BACKGROUNDS)
    assert longest + 8 <= length, "room for an 8-vector token in the longest caption"


needs_classifier = pytest.mark.skipif(not WEIGHTS.exists(), reason=f"classifier weights not shipped: {WEIGHTS}")
needs_model = pytest.mark.skipif(not (MODEL_DIR / "unet").is_dir(),
                                 reason=f"toy model not trained yet: {MODEL_DIR} (python -m toyworld.train)")


@needs_classifier
def test_classifier_accuracy_on_fresh_images():
    from toyworld.classifier import predict

    rng = np.random.default_rng(987)
    scenes = [sample_scene(rng) for _ in range(300)]
    images = torch.from_numpy(np.stack([to_array(render_scene(s)) for s in scenes]))
    pred = predict(images)
    for head in ("shape", "colour", "background"):
        acc = np.mean([p == getattr(s, head) for p, s in zip(pred[head], scenes)])
        assert acc >= 0.9, (head, acc)


@needs_model
def test_pipeline_loads_and_generates():
    from toyworld import load_pipeline
    from toyworld.evaluate import generate

    pipe = load_pipeline()
    assert pipe.text_encoder.config.hidden_size == 768
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.eos_token_id
    assert pipe.text_encoder.config.max_position_embeddings >= pipe.tokenizer.model_max_length
    images = generate(pipe, ["a photo of a red circle"], n=1, seed=0, steps=4)
    assert images.shape == (1, 3, 64, 64)
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_concept_masks_mark_the_shape_pixels():
    from toyworld.concepts import concept_masks
    from toyworld.scenes import COLOURS

    images, masks = concept_images(DEMO_CONCEPT, n=3), concept_masks(DEMO_CONCEPT, n=3)
    fg = np.array(COLOURS[DEMO_CONCEPT[1]])
    for img, mask in zip(images, masks):
        is_fg = np.abs(np.asarray(img).astype(int) - fg).sum(-1) < 12
        marked = np.asarray(mask) > 128
        assert marked.mean() > 0.03
        assert (is_fg == marked).mean() > 0.97


@needs_model
def test_unet_init_continues_the_shipped_model_in_fp32():
    from toyworld import load_pipeline
    from toyworld.train import diffusion_models, parse_args

    args = parse_args(["--unet-init", str(MODEL_DIR)])
    unet, text_encoder = diffusion_models(build_tokenizer(), args)
    shipped = load_pipeline()
    assert unet.training and text_encoder.training
    assert next(unet.parameters()).dtype == torch.float32
    for mine, theirs in ((unet, shipped.unet), (text_encoder, shipped.text_encoder)):
        reference = theirs.state_dict()
        for name, weight in mine.state_dict().items():
            assert torch.equal(weight, reference[name]), name


@needs_model
def test_unet_init_refuses_another_prediction_target():
    from toyworld.train import diffusion_models, parse_args

    args = parse_args(["--unet-init", str(MODEL_DIR), "--prediction", "epsilon"])
    with pytest.raises(SystemExit, match="--prediction v_prediction"):
        diffusion_models(build_tokenizer(), args)


@needs_model
def test_unet_init_refuses_a_model_of_another_vocabulary():
    from toyworld.train import diffusion_models, parse_args

    class OtherTokenizer:
        def __len__(self):
            return 7

    with pytest.raises(SystemExit, match="same toyworld/tokenizer.py"):
        diffusion_models(OtherTokenizer(), parse_args(["--unet-init", str(MODEL_DIR)]))


def test_unet_channels_set_the_fresh_unet_widths():
    from toyworld.train import diffusion_models, parse_args

    args = parse_args(["--unet-channels", "16,32,48", "--unet-groups", "16"])
    unet, _ = diffusion_models(build_tokenizer(), args)
    assert tuple(unet.config.block_out_channels) == (16, 32, 48)
    assert unet.config.norm_num_groups == 16


def test_unet_channels_that_groups_cannot_divide_are_refused_before_training(capsys):
    from toyworld.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--unet-channels", "48,96,112"])
    assert "every width must divide by --unet-groups 32; pass --unet-groups 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--unet-channels", "24,48,72"])
    assert "pass --unet-groups 24" in capsys.readouterr().err


def test_unet_channels_must_be_integers(capsys):
    from toyworld.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--unet-channels", "48;96"])
    assert "comma-separated integers" in capsys.readouterr().err


def test_evaluation_report_replaces_only_its_own_section(tmp_path):
    from toyworld.evaluate import EVAL_SECTION, write_report

    (tmp_path / "TRAINING.md").write_text(f"# record\n\nsteps 5\n\n{EVAL_SECTION}\n\nold 56%\n\n"
                                          "## The previous model\n\n### Obeys text\n\nkept\n")
    write_report(f"{EVAL_SECTION}\n\nnew 97%\n", tmp_path)
    text = (tmp_path / "TRAINING.md").read_text()
    assert "steps 5" in text and "new 97%" in text and "old 56%" not in text
    assert text.index("new 97%") < text.index("## The previous model") and text.endswith("kept\n")
