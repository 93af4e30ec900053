"""Word polish (gfti_core/polish.py): candidates are whole-word moves, the pick is the lowest loss on its draw."""
import dataclasses

import torch

from fake_backend import FakeBackend
from gfti_core.config import InversionConfig
from gfti_core.engine import final_vectors, start_run
from gfti_core.polish import POLISH_SCALES, polish_candidates

IMAGES = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _state(tmp_path, **kw):
    words = tmp_path / "words.txt"
    words.write_text("car\ncat\ndog\n" + "\n".join(f"w{i}" for i in range(40)) + "\n")
    cfg = InversionConfig(init_mode="denoise-attention", init_words=str(words), subspace_dim=8, popsize=8,
                          samples_per_candidate=4, holdout_samples=16, **kw)
    backend = FakeBackend()
    return backend, start_run(backend, cfg, IMAGES)


def test_candidates_add_whole_words_per_vector_slot_and_respect_the_norm_cap():
    rows = {"clip_l": torch.eye(4)[:2] * 2.0}
    vectors = {"clip_l": torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]])}
    names, stacked = polish_candidates(vectors, rows, ["a", "b"], max_norm={"clip_l": 3.0})
    assert len(names) == 1 + 2 * 2 * len(POLISH_SCALES) == stacked["clip_l"].shape[0]
    assert names[0] == "unpolished" and torch.equal(stacked["clip_l"][0], vectors["clip_l"])
    moved = stacked["clip_l"][names.index("+0.5 b (vector 2)")]
    torch.testing.assert_close(moved, torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 1.0]]))  # slot 1 only
    capped = stacked["clip_l"][names.index("+2 a (vector 1)")][0]  # 1 + 2·2 = 5 along a, capped at norm 3
    torch.testing.assert_close(capped, torch.tensor([3.0, 0, 0, 0]))


def test_polish_moves_toward_the_planted_optimum_and_reports_its_choice(tmp_path):
    """The fake model's optimum is 0.5·(cat + dog); the vector to polish (no search: 0 generations) is 0.3·cat,
    short of both words, so adding some of a word must lower the loss. The pick is the argmin of the reported
    losses, the returned vector is exactly that move, and every candidate cost polish_samples rows."""
    backend, state = _state(tmp_path, polish_samples=64)
    short = {"clip_l": 0.3 * backend.table[7][None]}
    state = dataclasses.replace(state, subspace=dataclasses.replace(state.subspace, origin=short), best_vectors=short)
    assert {"cat", "dog"} <= set(state.init_info["subspace_words"])
    vectors, report = final_vectors(state, backend)
    losses = report["polish_loss"]
    assert report["polish"] == min(losses, key=losses.get) != "unpolished", report
    assert losses[report["polish"]] < losses["unpolished"]
    scale, word = report["polish"][1:].split(" ", 1)
    j = state.init_info["subspace_words"].index(word)
    expected = state.subspace.origin["clip_l"] + float(scale) * state.subspace.bases["clip_l"][j]
    torch.testing.assert_close(vectors["clip_l"], expected)
    assert report["polish_rows"] == len(losses) * 64
    assert len(losses) == 1 + len(state.init_info["subspace_words"]) * len(POLISH_SCALES)


def test_polish_off_or_without_word_coordinates_changes_nothing(tmp_path):
    backend, state = _state(tmp_path)  # polish_samples=0: the default
    vectors, report = final_vectors(state, backend)
    assert "polish" not in report
    torch.testing.assert_close(vectors["clip_l"], state.subspace.origin["clip_l"])
    no_words = dataclasses.replace(state, config=dataclasses.replace(state.config, polish_samples=64),
                                   init_info={k: v for k, v in state.init_info.items() if k != "subspace_words"})
    assert "polish" not in final_vectors(no_words, backend)[1]
    with_words = dataclasses.replace(no_words, init_info=state.init_info)
    assert "polish" in final_vectors(with_words, backend)[1]
    assert "polish" not in final_vectors(with_words, backend, polish_words=False)[1]  # e.g. an interrupted job


def test_the_choice_is_described_with_the_polish_only_when_it_moved_the_vector():
    from gfti_core.engine import describe_choice

    assert describe_choice({"chosen": "tail-mean"}) == "tail-mean"
    assert describe_choice({"chosen": "mean", "polish": "unpolished"}) == "mean"
    assert describe_choice({"chosen": "mean", "polish": "+0.5 cyan"}) == "mean, +0.5 cyan (word polish)"
