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


def figure2_curves(d: int, c: float, window: int, points: int, seed: int) -> dict:
    """What Figure 2 and Figure 5 plot: the least-squares fit (``fit``: its h, s, y), a(s) on a fine grid of
    [0, L] (``inside_s``, ``inside``) and of [L, 2L] (``beyond_s``, ``beyond``), and B(s)/d (``b_over_d``) on the
    integers of (L, 2L] (``grid``)."""
    f = fit(d, window, points, seed, c)
    inside_s, beyond_s = np.linspace(0, window, 20 * window + 1), np.linspace(window, 2 * window, 20 * window + 1)
    grid = np.arange(window + 1, 2 * window + 1)
    return {"fit": f, "inside_s": inside_s, "inside": score(f["h"], inside_s, c),
            "beyond_s": beyond_s, "beyond": score(f["h"], beyond_s, c), "grid": grid, "b_over_d": B(grid, d, c) / d}


def theorem21_worst_ratios(h: np.ndarray, window: int, seed: int, random_h: int, c: float = 10000.0) -> dict:
    """Theorem 2.1 checked at seeded random fractional points of [0, 2L]: the largest |a(s) - a_linear(s)| over
    ``interpolation_bound`` for the coefficients ``h`` (20000 points), and for ``random_h`` random complex
    coefficient vectors of the same length (2000 points each), against the paper's bound and the ``exact`` one.
    The bound holds where a ratio is at most 1."""
    rng = np.random.default_rng(seed)
    frac = rng.uniform(0, 2 * window, 20000)
    worst = float((np.abs(score(h, frac, c) - linear_interpolation(h, frac, c))
                   / interpolation_bound(h, frac, c)).max())
    worst_random = worst_exact = 0.0
    for _ in range(random_h):
        hr = rng.normal(size=len(h)) + 1j * rng.normal(size=len(h))
        s = rng.uniform(0, 2 * window, 2000)
        dev = np.abs(score(hr, s, c) - linear_interpolation(hr, s, c))
        worst_random = max(worst_random, float((dev / interpolation_bound(hr, s, c)).max()))
        worst_exact = max(worst_exact, float((dev / interpolation_bound(hr, s, c, exact=True)).max()))
    return {"thm21_worst_ratio_fit": worst, "thm21_worst_ratio_random": worst_random,
            "thm21_worst_ratio_random_exact": worst_exact}


def figure2_numbers(d: int, c: float, window: int, points: int, seed: int, random_h: int = 100,
                    curves: dict | None = None) -> dict:
    """The numbers findings 6a–6c check (rule figure2 writes them as ``theory/figure2.json``): the fit's largest
    |a(s)| inside [0, L] and beyond it and its RMS error, Theorem 2.1's worst deviation / bound ratios
    (``theorem21_worst_ratios``), min B(s)/d beyond L and the extrapolation / interpolation bound ratio on the
    integer grid. ``curves``: ``figure2_curves`` of the same arguments, if already computed."""
    curves = curves or figure2_curves(d, c, window, points, seed)
    f, h = curves["fit"], curves["fit"]["h"]
    return {"d": d, "c": c, "window": window, "points": points, "seed": seed,
            "max_abs_inside": float(np.abs(curves["inside"]).max()),
            "max_abs_beyond": float(np.abs(curves["beyond"]).max()),
            "fit_rmse": float(np.sqrt(np.mean((score(h, f["s"], c) - f["y"]) ** 2))),
            **theorem21_worst_ratios(h, window, seed, random_h, c), "thm21_random_h": random_h,
            "B_over_d_min_beyond": float(curves["b_over_d"].min()),
            "extrapolation_over_interpolation_bound": integer_grid_ratio(d, curves["grid"], c)}
