"""A small deterministic bounded least-squares solver (projected Levenberg–Marquardt with
forward-difference Jacobians), for ``xds calibrate``'s few factors and tens of points.

Works on the unit box ``[0, 1]^n`` (the caller maps each factor's bounds onto it). A parameter on a
bound whose gradient points outward is held there (active set), so "the data push against the bound"
is an exact, reportable outcome rather than a vanishing-gradient artefact of a transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class LsqResult:
    """``x``: the solution on the unit box; ``cost``: Σ residual²; ``iterations``; ``evaluations``
    of the residual function; ``at_low``/``at_high``: masks of parameters held on a bound."""

    x: np.ndarray
    cost: float
    iterations: int
    evaluations: int
    at_low: np.ndarray
    at_high: np.ndarray


def levenberg_marquardt(res: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, *,
                        max_iter: int = 30, h: float = 1e-4, tol: float = 1e-9) -> LsqResult:
    """Minimise ``Σ res(x)²`` over ``x ∈ [0, 1]^n`` starting at ``x0`` (clipped)."""
    x = np.clip(np.asarray(x0, dtype=float), 0.0, 1.0)
    n = len(x)
    r = res(x)
    cost = float(r @ r)
    evals, lam, it = 1, 1e-3, 0
    for it in range(1, max_iter + 1):
        jac = np.empty((len(r), n))
        for i in range(n):
            step = h if x[i] + h <= 1.0 else -h
            xi = x.copy()
            xi[i] += step
            jac[:, i] = (res(xi) - r) / step
        evals += n
        g = jac.T @ r
        free = ~(((x <= 0.0) & (g > 0)) | ((x >= 1.0) & (g < 0)))
        if not free.any():
            break
        a = jac[:, free].T @ jac[:, free]
        improved = False
        while lam < 1e8:
            d = np.zeros(n)
            d[free] = np.linalg.solve(a + lam * (np.diag(np.diag(a)) + 1e-12 * np.eye(len(a))), -g[free])
            xn = np.clip(x + d, 0.0, 1.0)
            rn = res(xn)
            evals += 1
            cn = float(rn @ rn)
            if cn < cost:
                improved = True
                done = cost - cn <= tol * max(cost, 1e-12) or np.max(np.abs(xn - x)) < 1e-7
                x, r, cost, lam = xn, rn, cn, max(lam / 3.0, 1e-9)
                break
            lam *= 4.0
        if not improved or done:
            break
    return LsqResult(x, cost, it, evals, x <= 1e-9, x >= 1.0 - 1e-9)
