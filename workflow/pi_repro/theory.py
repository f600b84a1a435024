"""Section 2.3 of the paper: why interpolation is safer than extrapolation (Figure 2, Theorem 2.1, Figure 5).

A RoPE attention score as a function of the relative position s is a(s) = Re Σ_{j<d/2} h_j e^{i s θ_j} with
θ_j = c^{-2j/d} (c = 10000, d = 128 for LLaMA 7B). Fitted by least squares to random values in [-1, 1] at random
points of [0, L], it stays bounded inside [0, L] but can reach huge values beyond L (extrapolation), while between
integer positions it is smooth: Theorem 2.1 bounds its deviation from the linear interpolation of the neighbouring
integer values by d·max|h_j|·(s - s1)(s2 - s) / (8 ln c).
"""
from __future__ import annotations

import math

import numpy as np


def thetas(d: int, c: float = 10000.0) -> np.ndarray:
    return c ** (-2.0 * np.arange(d // 2) / d)


def basis(s, d: int, c: float = 10000.0) -> np.ndarray:
    """a(s) = basis(s) @ [Re h, Im h]: columns cos(s θ_j) and -sin(s θ_j)."""
    s = np.asarray(s, dtype=np.float64)[:, None]
    th = thetas(d, c)
    return np.hstack([np.cos(s * th), -np.sin(s * th)])


def score(h: np.ndarray, s, c: float = 10000.0) -> np.ndarray:
    """a(s) = Re Σ_j h_j e^{i s θ_j} for complex coefficients h (d/2 of them)."""
    d = 2 * len(h)
    return basis(s, d, c) @ np.concatenate([h.real, h.imag])


def fit(d: int, window: int, n_points: int, seed: int, c: float = 10000.0) -> dict:
    """h fitted by (minimum-norm) least squares to ``n_points`` random values in [-1, 1] at random positions of
    [0, window], seeded, as the paper's Figure 2 (left)."""
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0, window, n_points))
    y = rng.uniform(-1, 1, n_points)
    coef, *_ = np.linalg.lstsq(basis(s, d, c), y, rcond=None)
    return {"h": coef[: d // 2] + 1j * coef[d // 2:], "s": s, "y": y}


def interpolation_bound(h: np.ndarray, s, c: float = 10000.0, exact: bool = False) -> np.ndarray:
    """Theorem 2.1's bound on |a(s) - a_linear(s)| between the integers around s: max|a''| (s-s1)(s2-s)/2 with
    |a''| <= max|h| Σ_j θ_j² = max|h| Σ_j c^{-4j/d} <= max|h| / (1 - c^{-4/d}) (``exact``), which the paper writes
    as d / (4 ln c): the large-d value of that sum, smaller than it (by 13% at d = 128, 2.6x at d = 16), so the
    paper's constant is an approximation, not a bound, for small d."""
    s = np.asarray(s, dtype=np.float64)
    s1 = np.floor(s)
    d = 2 * len(h)
    curvature = 1 / (1 - c ** (-4 / d)) if exact else d / (4 * math.log(c))
    return np.abs(h).max() * curvature * (s - s1) * (s1 + 1 - s) / 2


def linear_interpolation(h: np.ndarray, s, c: float = 10000.0) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    s1 = np.floor(s)
    a1, a2 = score(h, s1, c), score(h, s1 + 1, c)
    return a1 + (s - s1) * (a2 - a1)


def B(s, d: int, c: float = 10000.0) -> np.ndarray:
    """B(s) = Σ_{k=1}^{d/2} |A_k(s)|, A_k(s) = Σ_{j<k} e^{i s θ_j}: the extrapolation bound's factor (|a(s)| <=
    max_j |h_j - h_{j+1}| B(s) <= 2 max_j |h_j| B(s)); the paper's Figure 5 plots B(s)/d."""
    s = np.asarray(s, dtype=np.float64)[:, None]
    partial = np.cumsum(np.exp(1j * s * thetas(d, c)), axis=1)
    return np.abs(partial).sum(axis=1)


def integer_grid_ratio(d: int, s, c: float = 10000.0) -> float:
    """The extrapolation bound 2·max|h|·B(s) over the interpolation bound on the integer grid d·max|h|/(32 ln c)
    (its largest value, at half-integers), at its smallest over ``s``: the paper's "about 600x"."""
    return float((2 * B(s, d, c) / (d / (32 * math.log(c)))).min())
