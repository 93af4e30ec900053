"""World 2 (tag captions, 32 px, 512-d text): its scenes, captions and vocabulary are what its model needs."""
import numpy as np

from toyworld.tokenizer import build_tokenizer, build_vocab
from toyworld.world2.concepts import HELD_OUT_CONCEPTS, NEW_CONTEXT, concept_masks, concept_scenes
from toyworld.world2.data import spec_images, training_caption, training_specs
from toyworld.world2.scenes import COLOURS, SHAPES, render_scene, tags, visible
from toyworld.worlds import get_world


def test_scenes_render_at_32_px_and_are_deterministic():
    a, b = (render_scene(concept_scenes(HELD_OUT_CONCEPTS[0])[0]) for _ in range(2))
    assert a.size == (32, 32) and np.array_equal(np.asarray(a), np.asarray(b))


def test_every_shape_and_colour_has_a_concept_at_most_once():
    shapes, colours = zip(*HELD_OUT_CONCEPTS)
    assert set(shapes) == set(SHAPES) and len(set(colours)) == len(colours) <= len(COLOURS)


def test_concept_images_never_show_the_new_context_and_stay_visible():
    for concept in HELD_OUT_CONCEPTS:
        scenes = concept_scenes(concept)
        assert all(s.background != NEW_CONTEXT and visible(s.colour, s.background) for s in scenes)
        assert all(0 < np.asarray(m).mean() < 255 for m in concept_masks(concept, n=2))


def test_captions_are_tags_of_the_scene():
    rng = np.random.default_rng(0)
    assert tags("magenta", "triangle", "black") == "magenta, triangle, black background"
    for spec in training_specs()[:20]:
        caption = training_caption(spec, rng)
        items = caption.split(", ")
        assert spec[0] in items and spec[1] in items and len(items) <= 4


def test_training_specs_skip_invisible_pairs():
    specs = training_specs()
    assert specs and all(visible(c, b) for _, c, b in specs)
    assert spec_images(specs[:2], 3, np.random.default_rng(0)).shape == (2, 3, 3, 32, 32)


def test_tokenizer_knows_every_caption_word_as_one_token():
    world = get_world("tags")
    tok = build_tokenizer(build_vocab(list(world.caption_words)), world.max_length)
    ids = tok("violet, heart, white background, sticker").input_ids
    assert tok.unk_token_id not in ids and len(ids) == 2 + 8 <= world.max_length
