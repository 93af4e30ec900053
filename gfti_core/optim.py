"""Ask/tell optimisers over subspace coefficients.

The optimiser's saved state is deliberately tiny: its settings, its seed and the fitness values it was told.
Every optimiser here is deterministic given those, so `replay()` rebuilds the exact internal state (CMA-ES
covariance, step-size paths, Adam moments) by re-running ask/tell — no pickle, and a resumed run continues
bit-for-bit like an uninterrupted one. Replaying costs only the optimiser's own arithmetic (milliseconds per
generation), never a model forward.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np

from .errors import RunDivergedError

log = logging.getLogger(__name__)

try:  # pycma's eigendecomposition is ~10x slower with default BLAS threading next to torch
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # optional: without it we only lose speed, never correctness
    _threadpool_limits = None


@contextlib.contextmanager
def quiet_numpy() -> Iterator[None]:
    """Pin BLAS to one thread and keep pycma away from the host's global numpy RNG (it seeds it)."""
    state = np.random.get_state()
    limiter = _threadpool_limits(limits=1, user_api="blas") if _threadpool_limits else contextlib.nullcontext()
    try:
        with limiter:
            yield
    finally:
        np.random.set_state(state)


@dataclass(frozen=True)
class OptimizerSpec:
    kind: str       # "cma" | "sep-cma" | "zo-adam"
    dim: int
    popsize: int
    sigma: float
    seed: int
    mirrored: bool = False  # CMA kinds: half the population are mirror images (m ± σz) of the other half


class Optimizer(Protocol):
    spec: OptimizerSpec

    def ask(self) -> np.ndarray: ...                       # [P, dim] float64
    def tell(self, x: np.ndarray, f: np.ndarray) -> None: ...
    @property
    def mean(self) -> np.ndarray: ...                      # [dim]
    @property
    def step_size(self) -> float: ...


class CMAOptimizer:
    """pycma CMA-ES; `diagonal=True` is sep-CMA (linear cost in dim, for large subspaces)."""

    def __init__(self, spec: OptimizerSpec, diagonal: bool):
        import cma  # imported here so a host without cma can still load GFTI and show a clear message

        self.spec = spec
        self._rng = np.random.default_rng(spec.seed)
        opts = {"popsize": spec.popsize, "seed": spec.seed + 1, "verbose": -9, "verb_disp": 0, "verb_log": 0,
                "randn": self._randn, "CMA_diagonal": diagonal, "tolfun": 0, "tolx": 0, "tolfunhist": 0,
                "tolstagnation": 10**9, "tolflatfitness": 10**9}
        if spec.mirrored:
            # Unconditional mirrored pairs (m + σz, m − σz). Scored on the same draw (common random numbers), a
            # pair is a two-sided difference along z: its ranking is free of the even-order (curvature) terms.
            opts.update({"CMA_mirrors": spec.popsize // 2, "CMA_mirrormethod": 0})
        with quiet_numpy():
            self._es = cma.CMAEvolutionStrategy(np.zeros(spec.dim), spec.sigma, opts)

    def _randn(self, *shape: int) -> np.ndarray:
        return self._rng.standard_normal(shape)

    def ask(self) -> np.ndarray:
        with quiet_numpy():
            return np.asarray(self._es.ask(), dtype=np.float64)

    def tell(self, x: np.ndarray, f: np.ndarray) -> None:
        with quiet_numpy():
            self._es.tell(list(x), [float(v) for v in f])

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self._es.mean, dtype=np.float64).copy()

    @property
    def step_size(self) -> float:
        return float(self._es.sigma)


class ZOAdamOptimizer:
    """Zeroth-order gradient estimate with antithetic random directions, followed by Adam.

    A population is [θ, θ+μu₁, θ−μu₁, θ+μu₂, …]; the gradient estimate is Σ (f₊−f₋)/(2μ)·u over pairs.
    μ = sigma, learning rate = 0.2·sigma. Included to compare against ZOODiP-style optimisation."""

    def __init__(self, spec: OptimizerSpec):
        if spec.popsize < 3:
            raise ValueError("zo-adam needs popsize ≥ 3 (the centre plus one ± pair)")
        self.spec = spec
        self._rng = np.random.default_rng(spec.seed)
        self._theta = np.zeros(spec.dim)
        self._m, self._v, self._t = np.zeros(spec.dim), np.zeros(spec.dim), 0
        self._u: np.ndarray | None = None

    def ask(self) -> np.ndarray:
        pairs = (self.spec.popsize - 1) // 2
        self._u = self._rng.standard_normal((pairs, self.spec.dim))
        mu = self.spec.sigma
        plus, minus = self._theta + mu * self._u, self._theta - mu * self._u
        rows = [self._theta] + [r for pair in zip(plus, minus) for r in pair]
        rows += [self._theta] * (self.spec.popsize - len(rows))  # even popsize: pad with the centre
        return np.stack(rows)

    def tell(self, x: np.ndarray, f: np.ndarray) -> None:
        assert self._u is not None, "tell() before ask()"
        pairs, mu = self._u.shape[0], self.spec.sigma
        diffs = np.asarray(f[1:1 + 2 * pairs:2]) - np.asarray(f[2:2 + 2 * pairs:2])
        grad = (diffs[:, None] * self._u).sum(0) / (2 * mu * pairs)
        self._t += 1
        self._m = 0.9 * self._m + 0.1 * grad
        self._v = 0.999 * self._v + 0.001 * grad**2
        m_hat, v_hat = self._m / (1 - 0.9**self._t), self._v / (1 - 0.999**self._t)
        self._theta = self._theta - 0.2 * self.spec.sigma * m_hat / (np.sqrt(v_hat) + 1e-8)

    @property
    def mean(self) -> np.ndarray:
        return self._theta.copy()

    @property
    def step_size(self) -> float:
        return self.spec.sigma


def make_optimizer(spec: OptimizerSpec) -> Optimizer:
    if spec.kind == "cma":
        return CMAOptimizer(spec, diagonal=False)
    if spec.kind == "sep-cma":
        return CMAOptimizer(spec, diagonal=True)
    if spec.kind == "zo-adam":
        return ZOAdamOptimizer(spec)
    raise ValueError(f"optimizer={spec.kind!r} is not one of ['cma', 'sep-cma', 'zo-adam']")


def replay(spec: OptimizerSpec, fitness_history: np.ndarray, means: list | None = None) -> Optimizer:
    """Rebuild an optimiser that has been told `fitness_history` [G, P], one row per generation. `means`, when
    given, receives the mean after each generation: the search's path, for the tail average."""
    opt = make_optimizer(spec)
    for row in np.asarray(fitness_history, dtype=np.float64):
        opt.tell(opt.ask(), row)
        if means is not None:
            means.append(opt.mean)
    return opt


def sanitize_fitness(f: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-finite losses (a NaN from the model) rank last: they become worst-finite + 1. Returns the
    cleaned values and how many were rejected; all-non-finite raises `RunDivergedError` (nothing can be ranked)."""
    f = np.asarray(f, dtype=np.float64).copy()
    bad = ~np.isfinite(f)
    if bad.all():
        raise RunDivergedError("every candidate's loss was NaN/Inf: the model produced invalid outputs "
                               "(try float32 instead of float16, or a smaller sigma)")
    if bad.any():
        f[bad] = f[~bad].max() + 1.0
    return f, int(bad.sum())
