r"""Gaussian integrals that have no closed form.

- :func:`expect_1d`: E[f(u)], u ~ N(0, q), Gauss-Hermite with ``deg`` nodes.
- :func:`expect_2d`: E[f(u) g(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]), deg² nodes,
  vectorised over the broadcast shape of (q1, q2, c), never materialising
  shape × deg² at once.
- :func:`expect_nd`: E[F(z_1..z_D)] for z ~ N(0, Σ) with Σ of shape (..., D, D):
  tensor Gauss-Hermite for D <= 4, chunked over nodes.
- :func:`expect_mc`: the Monte Carlo fallback for D > 4, with its standard error.

Quadrature is exact for polynomials of degree < 2·deg and converges exponentially for
analytic integrands; the error estimate compares ``deg`` with ⌈3·deg/4⌉.

**Divergence.**  Every rule integrates over |t| <= 8.87 standard deviations (the trapezoid
and polar rules) or where the Gauss-Hermite weights are not negligible, so an expectation
that diverges (E[exp(u²)²] for Var u >= 1/4) would come back finite and meaningless.  Each
rule therefore calls :func:`check_tails`: the Gaussian-weighted integrand, on rays in
several directions at the radii :data:`TAIL_RADII`, must not grow outwards while being
significant; when it does (the integrand outgrows the Gaussian weight, or its mass lies
beyond the rule's range), or when the sum is not finite, a :class:`NumericalError` says
so; :func:`named` prefixes it with the expectation (``E[x1·x1]``) the caller computes.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from ..errors import NumericalError, ProgramError, first_index

Array = np.ndarray
#: budget (number of float64s) for one quadrature temporary
CHUNK = 4_000_000


#: the trapezoid rule's half-width: the N(0, 1) density is below 1e-17 beyond it
TRAPEZOID_HALF_WIDTH = float(np.sqrt(2 * np.log(1e17)))
RULES = ("hermite", "trapezoid")


@lru_cache(maxsize=None)
def nodes(deg: int, rule: str = "hermite") -> tuple[Array, Array]:
    """Nodes and weights of E[f(t)], t ~ N(0, 1) ≈ Σ_k w_k f(t_k).

    ``hermite``: Gauss-Hermite, exact for polynomials of degree < 2·deg.
    ``trapezoid``: ``deg`` equispaced nodes on ±8.87 with weights h·φ(t); for analytic
    integrands with poles near the real axis (tanh, sigmoid) it converges much faster
    than Gauss-Hermite (geometrically in deg rather than in √deg).
    """
    if not isinstance(deg, (int, np.integer)) or deg < 1:
        raise NumericalError(f"quadrature degree must be an integer >= 1, got {deg!r}")
    if rule == "hermite":
        t, w = np.polynomial.hermite_e.hermegauss(deg)
        return t, w / np.sqrt(2 * np.pi)
    if rule == "trapezoid":
        if deg == 1:
            return np.zeros(1), np.ones(1)
        t = np.linspace(-TRAPEZOID_HALF_WIDTH, TRAPEZOID_HALF_WIDTH, deg)
        w = (t[1] - t[0]) * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)
        return t, w
    raise NumericalError(f"unknown quadrature rule {rule!r}; choose from {RULES}")


#: the radii (standard deviations) where :func:`check_tails` compares the weighted integrand:
#: inside, and at the edge of, the range the rules integrate over
TAIL_RADII = (7.0, TRAPEZOID_HALF_WIDTH)
#: the weighted integrand at the outer radius is "significant" above this fraction of max(1, |E|)
TAIL_SIGNIFICANT = 1e-12
#: an estimated mass beyond the outer radius above this fraction of max(1, |E|) is an error
TAIL_LOST = 1e-6


def _directions(D: int) -> np.ndarray:
    """Unit vectors in R^D for :func:`check_tails`: ±1 (D = 1); 16 angles (D = 2); the axes
    and the diagonals (D >= 3, all 2^D sign patterns up to D = 6)."""
    if D == 1:
        return np.array([[1.0], [-1.0]])
    if D == 2:
        a = np.arange(16) * (np.pi / 8)
        return np.stack([np.cos(a), np.sin(a)], axis=-1)
    eye = np.eye(D)
    out = [eye, -eye]
    if D <= 6:
        signs = np.array(np.meshgrid(*([[-1.0, 1.0]] * D), indexing="ij")).reshape(D, -1).T
        out.append(signs / np.sqrt(D))
    else:
        out += [np.ones((1, D)) / np.sqrt(D), -np.ones((1, D)) / np.sqrt(D)]
    return np.concatenate(out)


def check_tails(G: Callable[[Array], Array], D: int, value: Array) -> None:
    """Raise a NumericalError if the expectation ``value`` (any shape) = E[G(t)], t ~ N(0, I_D),
    cannot be trusted.  With ρ(r) = max over directions e of |G(r e)| · r^(D-1) · exp(-r²/2) /
    (2π)^(D/2) (the Gaussian-weighted integrand on rays, :func:`_directions`) at the radii
    r_in < r_out of :data:`TAIL_RADII`:

    - ρ grows outwards (ρ(r_out) > ρ(r_in)) while significant (> 1e-12 · max(1, ρ(1))), or is
      not finite at r_out (it overflows float64): the integrand outgrows the Gaussian weight, so the expectation
      diverges (exp(z²) with variance > 1/4) or its mass is beyond the range (exp(k z), k σ > 7);
    - the mass beyond r_out, estimated as |S^(D-1)| · ρ̄(r_out) / κ with ρ̄ the average over the
      directions instead of the largest value and κ the log-slope of ρ̄ over [r_out - 0.5, r_out]
      (an upper bound where ρ̄ is log-concave), exceeds :data:`TAIL_LOST` · max(1, |E|): the range
      the rules integrate over cuts off that much of the expectation;
    - the sum itself is not finite.

    For a convergent expectation whose mass is inside the range the weight wins: ρ falls by
    about e^-15 between the radii.  ``G(t)``: t of shape (D,) → an array broadcastable to
    value's shape."""
    value = np.asarray(value)
    r_in, r_out = TAIL_RADII
    r_near = r_out - 0.5  # the log-slope at the edge, for the mass beyond it
    rho, avg = {}, {}
    dirs = _directions(D)
    for r in (1.0, r_in, r_near, r_out):
        weight = r ** (D - 1) * math.exp(-r * r / 2) / (2 * np.pi) ** (D / 2)
        peak = np.zeros(value.shape)
        total = np.zeros(value.shape)
        with np.errstate(all="ignore"):
            for e in dirs:
                g = np.abs(np.broadcast_to(np.asarray(G(r * e), dtype=float), value.shape))
                g = np.where(np.isnan(g), np.inf, g)
                peak = np.maximum(peak, g)
                total = total + g
            rho[r] = peak * weight
            avg[r] = total / len(dirs) * weight
    scale = np.maximum(1.0, np.where(np.isfinite(value), np.abs(value), 0.0))

    def where(at) -> str:
        return f" (element {at} of the batch)" if value.ndim else ""

    bulk = np.maximum(1.0, rho[1.0])  # the integrand at one standard deviation: |E| may be dominated by the tails
    grows = ((rho[r_out] > rho[r_in]) & (rho[r_out] > TAIL_SIGNIFICANT * bulk)) | ~np.isfinite(rho[r_out])
    if grows.any():
        at = first_index(grows)
        raise NumericalError(
            f"the expectation diverges, or its mass lies beyond the quadrature's range{where(at)}: the integrand "
            f"weighted by the Gaussian density grows outwards, {rho[r_in][at]:.3g} at {r_in:g} and "
            f"{rho[r_out][at]:.3g} at {r_out:.3g} standard deviations (it outgrows exp(-|t|²/2), as exp(z²) with "
            f"variance > 1/4 does)")
    sphere = 2 * np.pi ** (D / 2) / math.gamma(D / 2)
    with np.errstate(all="ignore"):
        kappa = np.log(avg[r_near] / avg[r_out]) / (r_out - r_near)
        lost = np.where(avg[r_out] > 0, sphere * avg[r_out] / kappa, 0.0)
    cut = lost > TAIL_LOST * scale
    if cut.any():
        at = first_index(cut)
        raise NumericalError(
            f"the expectation has mass beyond the quadrature's range of {r_out:.3g} standard deviations"
            f"{where(at)}: about {lost[at]:.3g} of it ({lost[at] / scale[at]:.2g} relative to max(1, |E| = "
            f"{abs(float(value[at])):.3g})) lies further out, more than {TAIL_LOST:g} (the integrand grows almost as "
            "fast as the Gaussian weight decays)")
    if not np.all(np.isfinite(value)):
        at = first_index(~np.isfinite(value))
        raise NumericalError(f"the quadrature sum is {value[at]}{where(at)}: the integrand overflows or is "
                             "undefined at some node inside the range")


def _quiet(rule: Callable) -> Callable:
    """Run a rule with numpy's overflow / invalid warnings off: :func:`check_tails`, which every
    rule calls on its result, turns what they mean into a NumericalError."""
    import functools

    @functools.wraps(rule)
    def run(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return rule(*args, **kwargs)
    return run


def named(fn: Callable, what: str) -> Callable:
    """``fn`` with its NumericalError / ProgramError messages prefixed by ``E[what]`` (the
    expectation being computed, named after the program's nodes)."""
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (NumericalError, ProgramError) as err:
            if str(err).startswith("E["):
                raise
            raise type(err)(f"E[{what}]: {err}") from None
    return call


def expect_1d(f: Callable[[Array], Array], q: Array, deg: int, rule: str = "hermite") -> Array:
    t, w = nodes(deg, rule)
    s = np.sqrt(np.asarray(q, dtype=float))
    with np.errstate(over="ignore", invalid="ignore"):  # check_tails says what an overflow means
        total = sum(wk * f(s * tk) for tk, wk in zip(t, w))
    check_tails(lambda e: f(s * e[0]), 1, np.broadcast_to(total, np.shape(s)))
    return total


def correlation(q1: Array, q2: Array, c: Array) -> Array:
    """ρ = c / √(q1 q2), 0 where a variance is 0; rounding beyond |ρ| = 1 is an error
    past 1e-8 and folded back to ±1 below it."""
    qq = np.sqrt(q1) * np.sqrt(q2)  # (not √(q1q2): scale-safe)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(qq > 0, c / np.where(qq > 0, qq, 1.0), 0.0)
    if np.any(np.abs(rho) > 1 + 1e-8):
        raise NumericalError(f"covariance is not positive semi-definite (|ρ| = {np.max(np.abs(rho)):.3g} > 1)")
    return np.clip(rho, -1.0, 1.0)


def expect_2d(f: Callable[[Array], Array], g: Callable[[Array], Array],
              q1: Array, q2: Array, c: Array, deg: int, rule: str = "hermite") -> Array:
    """E[f(u) g(v)] with u = √q1 t1, v = √q2 (ρ t1 + √(1-ρ²) t2)."""
    q1, q2, c = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (q1, q2, c)))
    rho = correlation(q1, q2, c)
    s1, s2 = np.sqrt(q1), np.sqrt(q2)
    a, b = s2 * rho, s2 * np.sqrt(1 - rho * rho)
    t, w = nodes(deg, rule)
    size = max(1, q1.size)
    step = max(1, CHUNK // size)  # inner nodes evaluated at once: never shape × deg² in memory
    tb = [(t[k:k + step].reshape((-1,) + (1,) * q1.ndim), w[k:k + step]) for k in range(0, len(t), step)]
    total = np.zeros(q1.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # check_tails says what an overflow means
        for ti, wi in zip(t, w):
            at = a * ti
            inner = sum(np.tensordot(wj, g(at + b * tj), axes=(0, 0)) for tj, wj in tb)
            total += wi * f(s1 * ti) * inner
    check_tails(lambda e: f(s1 * e[0]) * g(a * e[0] + b * e[1]), 2, total)
    return total


@_quiet
def expect_2d_polar(F: Callable[[Array, Array], Array], q1: Array, q2: Array, c: Array, deg: int) -> Array:
    """E[F(u, v)] for integrands with kinks where u = 0 or v = 0 (relu, step, compositions).

    In standard coordinates (t1, t2), u = √q1 t1 and v = √q2 (ρ t1 + √(1-ρ²) t2) change sign
    on two lines through the origin; in polar coordinates these are four rays, so the
    integrand is smooth on each of the four sectors between them.  Each sector gets
    ``deg`` Gauss-Legendre nodes in the angle, the radius ``deg`` Gauss-Legendre nodes on
    [0, 8.87] with weight r·exp(-r²/2)/(2π): geometric convergence on both sides of a kink,
    where the other rules converge algebraically.
    """
    q1, q2, c = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (q1, q2, c)))
    rho = correlation(q1, q2, c)
    s1, s2, sr = np.sqrt(q1), np.sqrt(q2), np.sqrt(1 - rho * rho)
    two_pi = 2 * np.pi
    # the rays: u = 0 at ±π/2; v = 0 where ρ cos φ + √(1-ρ²) sin φ = 0
    kink = np.arctan2(-rho, sr)
    bounds = np.sort(np.stack([np.full(q1.shape, np.pi / 2), np.full(q1.shape, 3 * np.pi / 2),
                               np.mod(kink, two_pi), np.mod(kink + np.pi, two_pi)], axis=-1), axis=-1)
    bounds = np.concatenate([bounds, bounds[..., :1] + two_pi], axis=-1)  # close the circle
    x, w = np.polynomial.legendre.leggauss(deg)
    step = max(1, CHUNK // max(1, q1.size))
    r = TRAPEZOID_HALF_WIDTH / 2 * (x + 1)
    wr = w * TRAPEZOID_HALF_WIDTH / 2 * r * np.exp(-r * r / 2) / two_pi
    total = np.zeros(q1.shape)
    for k in range(4):
        lo, hi = bounds[..., k], bounds[..., k + 1]
        half = (hi - lo) / 2
        for xj, wj in zip(x, w):
            phi = lo + half * (xj + 1)
            cos, sin = np.cos(phi), np.sin(phi)
            u_dir, v_dir = s1 * cos, s2 * (rho * cos + sr * sin)
            radial = 0.0
            for k0 in range(0, len(r), step):  # radial nodes at once, chunked
                rk = r[k0:k0 + step].reshape((-1,) + (1,) * q1.ndim)
                radial = radial + np.tensordot(wr[k0:k0 + step], F(rk * u_dir, rk * v_dir), axes=(0, 0))
            total += wj * half * radial
    check_tails(lambda e: F(s1 * e[0], s2 * (rho * e[0] + sr * e[1])), 2, total)
    return total


def adaptive(integral: Callable[[int], Array], start: int, tol: float, max_deg: int) -> tuple[Array, int, float]:
    """Refine ``integral(deg)`` (deg = start, 2·start - 1, ...: nested trapezoid grids) until
    two successive levels agree to ``tol``·max(1, |I|) everywhere, or ``max_deg`` is reached.

    Returns (value, degree used, the last difference): the difference bounds the error of
    the coarser level, so for geometrically converging rules it is a conservative estimate.
    """
    deg = start
    val = integral(deg)
    diff = float("inf")  # no second level yet: no estimate
    while True:
        nxt = 2 * deg - 1
        if nxt > max_deg:
            return val, deg, diff
        new = integral(nxt)
        diff = float(np.max(np.abs(new - val) / np.maximum(1.0, np.abs(new)), initial=0.0))
        deg, val = nxt, new
        if diff <= tol:
            return val, deg, diff


#: an eigen-direction whose variance is below this fraction of the largest is dropped by
#: :func:`psd_sqrt` with ``reduce=True`` (the expectation changes by O(that variance))
RANK_RTOL = 1e-13


def psd_sqrt(cov: Array, what: str = "covariance", reduce: bool = False) -> Array:
    """L with L Lᵀ = cov for a batch of PSD matrices (eigendecomposition: singular is fine).

    ``reduce``: drop the eigen-directions that are negligible (< RANK_RTOL · the largest
    eigenvalue) in every matrix of the batch, so that L is (..., D, r) with r the batch's
    numerical rank: a shared bias read on both examples of a pair, or the same vector at
    both, makes a D-variable integral an r-dimensional one."""
    lam, vec = np.linalg.eigh(cov)
    scale = np.maximum(np.abs(lam).max(axis=-1, keepdims=True), 1e-300)
    if np.any(lam < -1e-8 * scale):
        raise NumericalError(f"{what} is not positive semi-definite (eigenvalue {lam.min():.3g})")
    L = vec * np.sqrt(np.maximum(lam, 0.0))[..., None, :]
    if reduce:  # eigh sorts ascending in every matrix: the dropped columns are the smallest ones
        keep = np.any(lam > RANK_RTOL * scale, axis=tuple(range(lam.ndim - 1)))
        keep[-1] = True
        L = L[..., keep]
    return L


@_quiet
def expect_nd(F: Callable[[Sequence[Array]], Array], cov: Array, deg: int, rule: str = "hermite",
              factor: Array | None = None) -> Array:
    """E[F(z)] for z ~ N(0, cov), cov of shape (..., D, D); F takes D arrays of shape (...).

    The tensor rule runs over the r = rank(cov) independent directions (``factor``: the
    (..., D, r) square root of :func:`psd_sqrt` with ``reduce=True``, if already computed)."""
    D = cov.shape[-1]
    L = psd_sqrt(cov, reduce=True) if factor is None else factor
    r = L.shape[-1]
    t, w = nodes(deg, rule)
    grids = np.stack(np.meshgrid(*([t] * r), indexing="ij"), axis=-1).reshape(-1, r)
    weights = np.prod(np.stack(np.meshgrid(*([w] * r), indexing="ij"), axis=-1).reshape(-1, r), axis=-1)
    batch = int(np.prod(cov.shape[:-2], dtype=np.int64)) or 1
    step = max(1, CHUNK // max(batch * D, 1))
    total = np.zeros(cov.shape[:-2])
    for start in range(0, len(grids), step):
        pts = grids[start:start + step]  # (P, r)
        z = np.einsum("...ij,pj->p...i", L, pts)  # (P, ..., D)
        vals = F([z[..., i] for i in range(D)])  # (P, ...)
        total += np.tensordot(weights[start:start + step], vals, axes=(0, 0))
    check_tails(_along(F, L, D), r, total)
    return total


def _along(F: Callable, L: Array, D: int) -> Callable[[Array], Array]:
    """t (r,) → F(L t): the integrand of expect_nd / expect_mc in standard coordinates."""
    def G(t):
        z = np.einsum("...ij,j->...i", L, t)
        return F([z[..., i] for i in range(D)])
    return G


@_quiet
def expect_mc(F: Callable[[Sequence[Array]], Array], cov: Array, samples: int,
              rng: np.random.Generator) -> tuple[Array, Array]:
    """Monte Carlo E[F(z)], z ~ N(0, cov); returns (mean, standard error)."""
    D = cov.shape[-1]
    L = psd_sqrt(cov, reduce=True)
    batch = int(np.prod(cov.shape[:-2], dtype=np.int64)) or 1
    step = max(1, CHUNK // max(batch * D, 1))
    s1 = np.zeros(cov.shape[:-2])
    s2 = np.zeros(cov.shape[:-2])
    done = 0
    while done < samples:
        m = min(step, samples - done)
        eps = rng.standard_normal((m, L.shape[-1]))
        z = np.einsum("...ij,pj->p...i", L, eps)
        vals = F([z[..., i] for i in range(D)])
        s1 += vals.sum(axis=0)
        s2 += (vals * vals).sum(axis=0)
        done += m
    mean = s1 / samples
    var = np.maximum(s2 / samples - mean * mean, 0.0)
    check_tails(_along(F, L, D), L.shape[-1], mean)
    return mean, np.sqrt(var / samples)
