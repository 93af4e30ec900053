"""Low-dimensional search spaces around the initial token vectors.

A candidate is a coefficient vector z of length `dim`; `decode(z)` gives, per text encoder, N token vectors
e = e0 + z_block @ basis. The layout of z is: for each encoder in order, N consecutive blocks of k
coefficients (SDXL therefore concatenates clip_l's and clip_g's coefficients).

Unlike the original GF-TI code, decoding never adds the vocabulary mean on top of e0 (that lands far off the
token manifold), and the PCA basis is scaled so that z ~ N(0, I) moves e0 by about `scale` token spreads
(config `subspace_scale`, 8 by default: docs/engine.md point 9). The first `subspace_words` rows of a PCA
basis are whole word vectors the init ranked best, so the search can weigh real words (point 12).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import ConfigError


@dataclass(frozen=True)
class Subspace:
    kind: str                          # "pca" | "prior-normal"
    bases: dict[str, torch.Tensor]     # encoder -> [k, D] float32
    origin: dict[str, torch.Tensor]    # encoder -> [N, D] float32 (e0)
    max_norm: dict[str, float] = field(default_factory=dict)  # encoder -> norm cap (absent: no cap)

    @property
    def num_vectors(self) -> int:
        return next(iter(self.origin.values())).shape[0]

    @property
    def dim(self) -> int:
        return sum(self.num_vectors * b.shape[0] for b in self.bases.values())

    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """z [P, dim] → {encoder: [P, N, D]}."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"coefficients must be [P, {self.dim}], got {tuple(z.shape)}")
        out, offset, n = {}, 0, self.num_vectors
        for name, basis in self.bases.items():
            k = basis.shape[0]
            block = z[:, offset:offset + n * k].reshape(z.shape[0], n, k)
            offset += n * k
            vectors = self.origin[name].unsqueeze(0) + block @ basis
            out[name] = cap_norm(vectors, self.max_norm.get(name))
        return out


def cap_norm(vectors: torch.Tensor, cap: float | None) -> torch.Tensor:
    if not cap:
        return vectors
    norms = vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return vectors * (cap / norms).clamp(max=1.0)


def pca_basis(table: torch.Tensor, k: int, scale: float = 1.0) -> torch.Tensor:
    """Top-k principal directions of the token table [V, D], each scaled by the vocabulary's standard
    deviation along it (times `scale`), so a unit coefficient step is a token-sized move. → [k, D]."""
    table = table.float()
    k = _check_k(k, min(table.shape))
    centred = table - table.mean(0, keepdim=True)
    cov = centred.T @ centred / max(1, table.shape[0] - 1)
    eigvals, eigvecs = torch.linalg.eigh(cov.double())  # ascending order
    top = torch.arange(cov.shape[0] - 1, cov.shape[0] - 1 - k, -1)
    std = eigvals[top].clamp_min(0).sqrt()
    return (eigvecs[:, top].T * std[:, None] * scale).float()


def prior_normal_basis(table: torch.Tensor, k: int, sigma: float, alpha: float, seed: int) -> torch.Tensor:
    """BBT's random projection: entries N(0, s²), s = α·ŝ/(√k·σ), ŝ the std of the table's entries, so that
    with z ~ N(0, σ²I) every coordinate of the move has std α·ŝ, like a real token. → [k, D]."""
    k = _check_k(k, 10**9)
    s = alpha * table.float().std().item() / (k ** 0.5 * sigma)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    return torch.randn(k, table.shape[1], generator=gen) * s


def _check_k(k: int, limit: int) -> int:
    if k < 1:
        raise ConfigError(f"subspace_dim={k} must be at least 1")
    if k > limit:
        raise ConfigError(f"subspace_dim={k} exceeds the {limit} directions the token table has; "
                          f"use subspace_dim ≤ {limit}")
    return k


def real_token_norm_cap(table: torch.Tensor, multiple: float) -> float | None:
    """`multiple` × the largest norm among real tokens (None when multiple is 0 = no cap)."""
    return float(table.float().norm(dim=1).max()) * multiple if multiple > 0 else None


def words_and_pca_basis(table: torch.Tensor, words: torch.Tensor | None, k: int, scale: float) -> torch.Tensor:
    """k rows: the word vectors [m, D] as they are (a unit coefficient adds one whole word), then the table's
    top k − m principal directions. Why words: a concept such as "cyan triangle" is drawn by roughly
    2·(cyan + triangle), a vector the top PCA directions of a token table barely span (docs/engine.md
    point 12); with the words as coordinates the search only has to find their weights."""
    m = 0 if words is None else min(words.shape[0], k)
    rows = [words[:m].float()] if m else []
    if k - m > 0:
        rows.append(pca_basis(table, k - m, scale))
    return torch.cat(rows)


def build_subspace(kind: str, tables: dict[str, torch.Tensor], origin: dict[str, torch.Tensor], *, k: int,
                   scale: float, sigma: float, seed: int, norm_limit: float = 0.0,
                   words: dict[str, torch.Tensor] | None = None) -> Subspace:
    """`words` ({encoder: [m, D]}, pca only): word vectors that become the first m coefficients."""
    bases, caps = {}, {}
    for name, table in tables.items():
        if kind == "pca":
            bases[name] = words_and_pca_basis(table, (words or {}).get(name), k, scale)
        elif kind == "prior-normal":
            bases[name] = prior_normal_basis(table, k, sigma, scale, seed + len(bases))
        else:
            raise ConfigError(f"subspace={kind!r} is not one of ['pca', 'prior-normal']")
        cap = real_token_norm_cap(table, norm_limit)
        if cap is not None:
            caps[name] = cap
    return Subspace(kind, bases, {n: v.float().clone() for n, v in origin.items()}, caps)
