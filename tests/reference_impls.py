"""Independent reference implementations of infinite-width NNGP / NTK kernels.

These are written directly from the papers' formulas with plain numpy (no
``tpkernel`` import) and are used by the test-suite to cross-check the library.
They favour clarity over speed.

Conventions (NTK parametrization, neural-tangents style)
-------------------------------------------------------
* A weight with std ``sigma`` acts as ``sigma * w / sqrt(fan_in)`` with
  ``w_ij ~ N(0, 1)`` iid, trained with learning-rate multiplier 1.
* The input layer divides by the input dimension ``d``: its covariance is
  ``sigma_U^2 <xi, xi'> / d``.  A bias ``sigma_b * beta``, ``beta ~ N(0, 1)``,
  has covariance ``sigma_b^2``.
* The readout is ``f = sigma_v v^T s / sqrt(n)``.
* The NTK is ``Theta(xi, xi') = sum_params sum_a df(xi)/dw_a df(xi')/dw_a`` in
  the infinite-width limit (w_a the standardised N(0,1) parameters).

Contents
--------
* :func:`V_erf`, :func:`V_derf` (and the namespace :data:`erf_closed_forms`):
  Gaussian expectations of erf / erf' products.
* :func:`rnn_erf_ntk`: NNGP and NTK of the simple erf RNN of Tensor Programs II
  (Yang 2020, Sec. 6.2.1 and Appendix E.2), last-state readout, sequences of
  different lengths allowed.
* :func:`mlp_relu_ntk`: NNGP and NTK of a ReLU MLP with biases (Jacot et al.
  2018 / Arora et al. 2019 arc-cosine recursion, neural-tangents conventions).
* :func:`arora_toy_ntk`: the bias-free ReLU NTK in the exact Arora et al. (2019)
  convention (Sigma^0 = <x, y>, c_sigma = 2), default 3 hidden layers.
"""

from __future__ import annotations

import types

import numpy as np

__all__ = [
    "V_erf",
    "V_derf",
    "erf_closed_forms",
    "rnn_erf_ntk",
    "mlp_relu_ntk",
    "arora_toy_ntk",
    "relu_expectations",
]


# ---------------------------------------------------------------------------
# 1. erf closed forms
# ---------------------------------------------------------------------------
def V_erf(q1, q2, c):
    r"""E[erf(u) erf(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]).

    .. math::
        V_{\mathrm{erf}}(q_1, q_2, c) = \frac{2}{\pi}
        \arcsin\!\left(\frac{2c}{\sqrt{(1 + 2q_1)(1 + 2q_2)}}\right).

    Vectorised (numpy broadcasting), float64.
    """
    q1 = np.asarray(q1, dtype=np.float64)
    q2 = np.asarray(q2, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    arg = 2.0 * c / np.sqrt((1.0 + 2.0 * q1) * (1.0 + 2.0 * q2))
    return (2.0 / np.pi) * np.arcsin(np.clip(arg, -1.0, 1.0))


def V_derf(q1, q2, c):
    r"""E[erf'(u) erf'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]).

    With erf'(x) = (2/sqrt(pi)) exp(-x^2),

    .. math::
        V_{\mathrm{erf}'}(q_1, q_2, c) = \frac{4}{\pi}
        \frac{1}{\sqrt{(1 + 2q_1)(1 + 2q_2) - 4c^2}}.

    Vectorised (numpy broadcasting), float64.
    """
    q1 = np.asarray(q1, dtype=np.float64)
    q2 = np.asarray(q2, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    det = (1.0 + 2.0 * q1) * (1.0 + 2.0 * q2) - 4.0 * c * c
    return (4.0 / np.pi) / np.sqrt(det)


#: Namespace bundling the two erf closed forms (``erf_closed_forms.V_erf`` ...).
erf_closed_forms = types.SimpleNamespace(V_erf=V_erf, V_derf=V_derf)


# ---------------------------------------------------------------------------
# 2. Simple erf RNN (Tensor Programs II, Sec. 6.2.1 + Appendix E.2)
# ---------------------------------------------------------------------------
def _rnn_self_q(xs, sigma_w, sigma_u, sigma_b):
    """Diagonal forward variances q^t = Sigma(h^t, h^t) of one sequence (t = 1..T).

    q^1 = sigma_u^2 |xi^1|^2/d + sigma_b^2,
    q^t = sigma_w^2 V_erf(q^{t-1}, q^{t-1}, q^{t-1}) + sigma_u^2 |xi^t|^2/d + sigma_b^2.
    """
    T, d = xs.shape
    q = np.zeros(T)
    for t in range(T):
        inp = sigma_u**2 * float(xs[t] @ xs[t]) / d + sigma_b**2
        rec = 0.0 if t == 0 else sigma_w**2 * float(V_erf(q[t - 1], q[t - 1], q[t - 1]))
        q[t] = rec + inp
    return q


def _rnn_pair(xa, xb, sigma_w, sigma_u, sigma_b, sigma_v):
    """NNGP and NTK for one pair of sequences xa (T, d), xb (T', d). See rnn_erf_ntk."""
    T, d = xa.shape
    Tb, db = xb.shape
    if d != db:
        raise ValueError("sequences must share the input dimension d")

    qa = _rnn_self_q(xa, sigma_w, sigma_u, sigma_b)
    qb = _rnn_self_q(xb, sigma_w, sigma_u, sigma_b)

    # Forward.  Index 0 <-> time step 1.
    # Sig[t, r] = Cov(h^t, h'^r);  Cs[t, r] = E[s^t s'^r] = V_erf(...);
    # Cd[t, r]  = E[erf'(h^t) erf'(h'^r)] = V_derf(...).
    Sig = np.zeros((T, Tb))
    Cs = np.zeros((T, Tb))
    Cd = np.zeros((T, Tb))
    ip = np.zeros((T, Tb))  # <xi^t, xi'^r>/d
    for t in range(T):
        for r in range(Tb):
            ip[t, r] = float(xa[t] @ xb[r]) / d
            # W term only if both steps are >= 2 (C^{s^0, .} = 0: h^1 has no W term).
            rec = sigma_w**2 * Cs[t - 1, r - 1] if (t >= 1 and r >= 1) else 0.0
            Sig[t, r] = rec + sigma_u**2 * ip[t, r] + sigma_b**2
            Cs[t, r] = V_erf(qa[t], qb[r], Sig[t, r])
            Cd[t, r] = V_derf(qa[t], qb[r], Sig[t, r])

    # Backward (gradient independence / NETSOR^T master theorem).
    # Ds[t, r] = E[ds^t ds'^r],  Dh[t, r] = E[dh^t dh'^r].
    # Initial condition (LastState): Ds[T, T'] = sigma_v^2, Ds[T, r] = Ds[t, T'] = 0
    # otherwise.  Recursion, for t, r >= 2:
    #   Dh[t, r] = Ds[t, r] * Cd[t, r]
    #   Ds[t-1, r-1] = sigma_w^2 * Dh[t, r]
    #   Ds[t-1, r'] = 0 if r' = T' (top of the other sequence), and Ds[t', r-1] = 0 if t' = T.
    # Filling the full table by explicit loops (reverse order) automatically
    # produces the lockstep structure Ds[T-i, T'-j] = 0 for i != j.
    Ds = np.zeros((T, Tb))
    Dh = np.zeros((T, Tb))
    for t in range(T - 1, -1, -1):
        for r in range(Tb - 1, -1, -1):
            if t == T - 1 and r == Tb - 1:
                Ds[t, r] = sigma_v**2
            elif t == T - 1 or r == Tb - 1:
                Ds[t, r] = 0.0  # only one side is the readout state: E[v * W^T dh] = 0
            else:
                Ds[t, r] = sigma_w**2 * Dh[t + 1, r + 1]
            Dh[t, r] = Ds[t, r] * Cd[t, r]

    # NTK contributions (Appendix E.2 / Eq. (12)).
    theta_W = 0.0
    for t in range(1, T):          # time steps t >= 2 (use s^{t-1})
        for r in range(1, Tb):
            theta_W += Dh[t, r] * sigma_w**2 * Cs[t - 1, r - 1]
    theta_U = 0.0
    theta_b = 0.0
    for t in range(T):
        for r in range(Tb):
            theta_U += Dh[t, r] * sigma_u**2 * ip[t, r]
            theta_b += Dh[t, r] * sigma_b**2
    nngp = sigma_v**2 * Cs[T - 1, Tb - 1]
    theta_v = nngp
    ntk = theta_W + theta_U + theta_b + theta_v
    return nngp, ntk


def rnn_erf_ntk(xs1, xs2, sigma_w=1.0, sigma_u=1.0, sigma_b=0.0, sigma_v=1.0):
    r"""Infinite-width NNGP and NTK of the simple erf RNN (last-state readout).

    Network (NTK parametrization, all of W, U, beta, v iid N(0, 1)):

    .. math::
        h^1 &= \sigma_u U\xi^1/\sqrt d + \sigma_b\beta, \\
        h^t &= \sigma_w W s^{t-1}/\sqrt n + \sigma_u U\xi^t/\sqrt d + \sigma_b\beta
              \quad (t \ge 2), \\
        s^t &= \mathrm{erf}(h^t), \qquad f(\xi) = \sigma_v v^\top s^T/\sqrt n .

    Forward (Tensor Programs II, Sec. 6.2.1 / App. E.2, with C^{s^0,.} = 0):

    .. math::
        \Sigma(h^t, h'^r) = \sigma_w^2 E[s^{t-1}s'^{r-1}]\,[t,r\ge2]
            + \sigma_u^2\langle\xi^t,\xi'^r\rangle/d + \sigma_b^2, \\
        E[s^t s'^r] = V_{erf}(q^t, q'^r, \Sigma(h^t,h'^r)),\quad
        E[\mathrm{erf}'(h^t)\mathrm{erf}'(h'^r)] = V_{erf'}(q^t, q'^r, \Sigma(h^t,h'^r)),

    where q^t = Sigma(h^t, h^t) of the sequence itself.

    Backward (gradient independence, ``dX = sqrt(n) df/dX``):
    ds^T = sigma_v v, dh^t = ds^t * erf'(h^t), ds^{t-1} = sigma_w W^T dh^t / sqrt(n), so

    .. math::
        E[dh^t dh'^r] = E[ds^t ds'^r]\,E[\mathrm{erf}'(h^t)\mathrm{erf}'(h'^r)],\qquad
        E[ds^{t-1} ds'^{r-1}] = \sigma_w^2 E[dh^t dh'^r],

    with initial condition E[ds^T ds'^{T'}] = sigma_v^2 and E[ds^T ds'^r] =
    E[ds^t ds'^{T'}] = 0 for all other r, t.

    **Lockstep structure.**  TP2 Appendix E.2 ("Initial condition for
    LastState") states: *"This initial condition in fact implies that most
    D^{s^t, s̄^r} are 0 by a simple induction: i != j => D^{s^{-i}, s̄^{-j}} = 0
    where s^{-i} = s^{T-i}, s̄^{-j} = s̄^{T̄-j}"*, and after the NTK formula:
    *"if the output depends only on the last state, then the double sum above
    can be replaced with a single sum over the diagonal D^{s^{-i}, s̄^{-i}}"*.
    I.e. the backward passes from the two last steps walk back in lockstep:
    only E[ds^{T-k} ds'^{T'-k}], k = 0..min(T,T')-1, is nonzero.  (This
    implementation fills the full (T, T') table with explicit loops; the zeros
    arise from the initial condition, they are not imposed by hand.)

    NTK (TP2 App. E.2, contributions of W, U, b, v):

    .. math::
        \Theta = \sum_{t,r\ge2} E[dh^t dh'^r]\,\sigma_w^2 E[s^{t-1}s'^{r-1}]
               + \sum_{t,r} E[dh^t dh'^r]\,\sigma_u^2\langle\xi^t,\xi'^r\rangle/d
               + \sum_{t,r} E[dh^t dh'^r]\,\sigma_b^2
               + \sigma_v^2 E[s^T s'^{T'}],

    and NNGP = sigma_v^2 E[s^T s'^{T'}].

    Parameters
    ----------
    xs1, xs2 : list of arrays, each of shape (T_i, d)
        Input sequences; lengths may differ.
    sigma_w, sigma_u, sigma_b, sigma_v : float
        Standard deviations of recurrent weight, input weight, bias, readout.

    Returns
    -------
    (nngp, ntk) : two float64 arrays of shape (len(xs1), len(xs2)).
    """
    xs1 = [np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in xs1]
    xs2 = [np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in xs2]
    nngp = np.zeros((len(xs1), len(xs2)))
    ntk = np.zeros((len(xs1), len(xs2)))
    for i, xa in enumerate(xs1):
        for j, xb in enumerate(xs2):
            nngp[i, j], ntk[i, j] = _rnn_pair(xa, xb, sigma_w, sigma_u, sigma_b, sigma_v)
    return nngp, ntk


# ---------------------------------------------------------------------------
# 3. ReLU MLP (arc-cosine kernels)
# ---------------------------------------------------------------------------
def relu_expectations(q1, q2, c):
    r"""Arc-cosine expectations for (u, v) ~ N(0, [[q1, c], [c, q2]]).

    With cos(theta) = c / sqrt(q1 q2) (clipped to [-1, 1]):

    .. math::
        E[\mathrm{relu}(u)\mathrm{relu}(v)] = \frac{\sqrt{q_1 q_2}}{2\pi}
            \left(\sin\theta + (\pi - \theta)\cos\theta\right), \qquad
        E[\mathbf 1_{u>0}\mathbf 1_{v>0}] = \frac{\pi - \theta}{2\pi}.

    Returns (E[relu relu], E[step step]).  If q1 q2 == 0, theta is taken as
    pi/2 (the first expectation is then 0 and the second 1/4, the value for
    any direction orthogonal to a zero vector - only a convention).
    """
    q1 = np.asarray(q1, dtype=np.float64)
    q2 = np.asarray(q2, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    norm = np.sqrt(q1 * q2)
    safe = np.where(norm > 0, norm, 1.0)
    cos = np.where(norm > 0, np.clip(c / safe, -1.0, 1.0), 0.0)
    theta = np.arccos(cos)
    e_relu = norm / (2.0 * np.pi) * (np.sin(theta) + (np.pi - theta) * cos)
    e_step = (np.pi - theta) / (2.0 * np.pi)
    return e_relu, e_step


def mlp_relu_ntk(X1, X2, depth, sigma_w, sigma_b):
    r"""NNGP and NTK of a ReLU MLP with biases (NTK parametrization).

    Architecture (neural-tangents ``stax.serial(Dense(σw, σb), Relu) * depth,
    Dense(σw, σb)``): ``depth`` hidden layers, each Dense(σw, σb) + ReLU, then a
    Dense(σw, σb) readout (layer L+1 = depth+1).

    Recursion (Jacot et al. 2018; Arora et al. 2019), with x in R^d:

    .. math::
        \Sigma^1(x,x') &= \sigma_w^2 \langle x,x'\rangle/d + \sigma_b^2, \qquad
        \Theta^1 = \Sigma^1, \\
        \Sigma^{l}(x,x') &= \sigma_w^2\,E[\mathrm{relu}(u)\mathrm{relu}(v)] + \sigma_b^2,\\
        \dot\Sigma^{l}(x,x') &= E[\mathbf 1_{u>0}\mathbf 1_{v>0}], \qquad
        (u,v)\sim N\!\left(0,\begin{pmatrix}\Sigma^{l-1}(x,x) & \Sigma^{l-1}(x,x')\\
              \Sigma^{l-1}(x,x') & \Sigma^{l-1}(x',x')\end{pmatrix}\right),\\
        \Theta^{l} &= \Sigma^{l} + \sigma_w^2\,\dot\Sigma^{l}\,\Theta^{l-1},
        \qquad l = 2, \dots, \mathrm{depth}+1,

    using the arc-cosine closed forms of :func:`relu_expectations`.  Returns
    (nngp, ntk) = (Σ^{depth+1}, Θ^{depth+1}) of shape (N1, N2).
    """
    X1 = np.atleast_2d(np.asarray(X1, dtype=np.float64))
    X2 = np.atleast_2d(np.asarray(X2, dtype=np.float64))
    d = X1.shape[1]
    if X2.shape[1] != d:
        raise ValueError("X1 and X2 must share the input dimension")

    # Layer 1 (input Dense).
    S12 = sigma_w**2 * (X1 @ X2.T) / d + sigma_b**2
    S11 = sigma_w**2 * np.sum(X1 * X1, axis=1) / d + sigma_b**2  # diagonals
    S22 = sigma_w**2 * np.sum(X2 * X2, axis=1) / d + sigma_b**2
    Th = S12.copy()
    for _ in range(depth):  # layers 2 .. depth+1
        q1 = S11[:, None]
        q2 = S22[None, :]
        e_relu, e_step = relu_expectations(q1, q2, S12)
        S12_new = sigma_w**2 * e_relu + sigma_b**2
        Sdot = e_step
        Th = S12_new + sigma_w**2 * Sdot * Th
        # diagonals: E[relu(u)^2] = q/2
        S11 = sigma_w**2 * S11 / 2.0 + sigma_b**2
        S22 = sigma_w**2 * S22 / 2.0 + sigma_b**2
        S12 = S12_new
    return S12, Th


# ---------------------------------------------------------------------------
# 4. Arora et al. (2019) toy NTK
# ---------------------------------------------------------------------------
def arora_toy_ntk(x, y, depth=3):
    r"""Bias-free ReLU NTK in the exact Arora et al. (2019) convention.

    Network: f(x) = w^{L+1}·sqrt(2/n) relu(W^L sqrt(2/n) relu(... W^1 x)), all
    weights N(0, 1), L = ``depth`` hidden layers (default 3), scalar output.
    Recursion (Arora et al. 2019, "On exact computation with an infinitely wide
    neural net", Eqs. (4), (5)), with c_sigma = 2:

    .. math::
        \Sigma^0(x,y) &= \langle x, y\rangle, \\
        \Sigma^h(x,y) &= 2\,E[\mathrm{relu}(u)\mathrm{relu}(v)], \quad
        \dot\Sigma^h(x,y) = 2\,E[\mathbf 1_{u>0}\mathbf 1_{v>0}], \quad
        (u,v)\sim N(0, \Lambda^h),\ \Lambda^h = \begin{pmatrix}\Sigma^{h-1}(x,x)&\Sigma^{h-1}(x,y)\\
        \Sigma^{h-1}(y,x)&\Sigma^{h-1}(y,y)\end{pmatrix}, \\
        \Theta^0 &= \Sigma^0, \qquad \Theta^h = \Theta^{h-1}\dot\Sigma^h + \Sigma^h,
        \qquad h = 1..L,

    and the result is Θ^L.  For unit-norm x, Θ(x, x) = L + 1.

    ``x`` and ``y`` may be 1-D vectors (returns a float) or 2-D arrays of rows
    (returns an (N1, N2) matrix).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    scalar = x.ndim == 1 and y.ndim == 1
    X = np.atleast_2d(x)
    Y = np.atleast_2d(y)
    S = X @ Y.T
    Sxx = np.sum(X * X, axis=1)
    Syy = np.sum(Y * Y, axis=1)
    Th = S.copy()
    for _ in range(depth):
        e_relu, e_step = relu_expectations(Sxx[:, None], Syy[None, :], S)
        S_new = 2.0 * e_relu
        Sdot = 2.0 * e_step
        Th = Th * Sdot + S_new
        S = S_new
        # 2 E[relu(u)^2] = q: diagonals are preserved
        Sxx = 2.0 * Sxx / 2.0
        Syy = 2.0 * Syy / 2.0
    if scalar:
        return float(Th[0, 0])
    return Th
