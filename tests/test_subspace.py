"""The PCA search space: a unit coefficient step is `scale` times the table's spread along each direction."""
import torch

from gfti_core.config import InversionConfig
from gfti_core.subspace import pca_basis


def _table(seed=0, vocab=200, width=32):
    return torch.randn(vocab, width, generator=torch.Generator().manual_seed(seed)) * 0.3


def test_pca_basis_rows_are_the_spread_of_the_table():
    table = _table(1)
    basis = pca_basis(table, 4)
    unit = basis / basis.norm(dim=1, keepdim=True)
    torch.testing.assert_close(basis.norm(dim=1), ((table - table.mean(0)) @ unit.T).std(0), rtol=1e-3, atol=1e-6)


def test_the_default_step_is_subspace_scale_spreads():
    table, scale = _table(2), InversionConfig().subspace_scale
    torch.testing.assert_close(pca_basis(table, 4, scale), scale * pca_basis(table, 4))


def test_word_rows_come_first_and_add_whole_words():
    from gfti_core.subspace import words_and_pca_basis

    table = _table(3)
    words = table[[5, 9]]
    basis = words_and_pca_basis(table, words, 6, scale=8.0)
    assert basis.shape == (6, table.shape[1])
    torch.testing.assert_close(basis[:2], words)             # coefficient 1 on row 0 adds word 5 exactly
    torch.testing.assert_close(basis[2:], pca_basis(table, 4, 8.0))


def test_word_rows_are_capped_by_the_subspace_size():
    from gfti_core.subspace import words_and_pca_basis

    table = _table(4)
    basis = words_and_pca_basis(table, table[:5], 3, scale=1.0)
    torch.testing.assert_close(basis, table[:3])
    torch.testing.assert_close(words_and_pca_basis(table, None, 3, 1.0), pca_basis(table, 3, 1.0))
