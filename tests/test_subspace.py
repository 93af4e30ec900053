"""The search spaces: scaled PCA and the `words` space spanned by the init's short-listed words."""
import pytest
import torch

from gfti_core.config import ConfigError
from gfti_core.subspace import build_subspace, pca_basis, words_basis


def _table(seed=0, vocab=200, width=32):
    return torch.randn(vocab, width, generator=torch.Generator().manual_seed(seed)) * 0.3


def test_words_basis_starts_with_the_directions_to_the_words_then_fills_with_pca():
    table = _table()
    origin, words = table[:1], table[[0, 5, 9]]  # the first word is e0 itself: no direction, skipped
    basis = words_basis(table, origin, words, k=6)
    assert basis.shape == (6, 32)
    unit = basis / basis.norm(dim=1, keepdim=True)
    span = unit[:2]
    for w in (5, 9):  # both word directions lie in the span of the first two basis rows
        d = table[w] - origin[0]
        assert (d - (d @ span.T) @ span).norm() < 1e-4 * d.norm()
    assert torch.allclose(unit @ unit.T, torch.eye(6), atol=1e-5), "orthogonal directions"
    # each row is scaled like pca_basis: the table's spread along it
    spread = ((table - table.mean(0)) @ unit.T).std(0)
    torch.testing.assert_close(basis.norm(dim=1), spread, rtol=1e-4, atol=1e-6)


def test_pca_basis_rows_are_the_spread_of_the_table():
    table = _table(1)
    basis = pca_basis(table, 4)
    unit = basis / basis.norm(dim=1, keepdim=True)
    torch.testing.assert_close(basis.norm(dim=1), ((table - table.mean(0)) @ unit.T).std(0), rtol=1e-3, atol=1e-6)


def test_words_subspace_without_a_short_list_names_the_fix():
    table = _table()
    with pytest.raises(ConfigError, match="denoise-attention"):
        build_subspace("words", {"clip_l": table}, {"clip_l": table[:1]}, k=4, scale=1.0, sigma=0.5, seed=0)
    sub = build_subspace("words", {"clip_l": table}, {"clip_l": table[:1]}, k=4, scale=1.0, sigma=0.5, seed=0,
                         words={"clip_l": table[[3, 4]]})
    moved = sub.decode(torch.tensor([[1.0, 0, 0, 0]]))["clip_l"][0, 0]
    towards = table[3] - table[0]
    assert torch.nn.functional.cosine_similarity(moved - table[0], towards, dim=0) > 0.99
