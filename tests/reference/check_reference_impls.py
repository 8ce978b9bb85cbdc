"""Self-check of tests/reference_impls.py (run: python tests/reference/check_reference_impls.py).

Checks, all with plain numpy (no tpkernel import):
  1. V_erf / V_derf closed forms vs Monte-Carlo Gaussian integration.
  2. rnn_erf_ntk with T = 1 equals an independently written 1-hidden-layer erf network kernel.
  3. rnn_erf_ntk vs a finite-width simulation (width n, manual backprop, explicit
     gradient arrays for W, U, beta, v), 3 sequences of lengths 3, 5, 4 in d = 4;
     also an empirical check of the backward "lockstep" structure.
  4. mlp_relu_ntk vs a finite-width ReLU MLP simulation (manual backprop).
  5. arora_toy_ntk value for the seed-1 example and consistency with mlp_relu_ntk.
"""
import os
import sys
import time

import numpy as np
from scipy.special import erf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reference_impls import V_derf, V_erf, arora_toy_ntk, mlp_relu_ntk, rnn_erf_ntk  # noqa: E402


def derf(x):
    return 2.0 / np.sqrt(np.pi) * np.exp(-x * x)


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


# ---------------------------------------------------------------------------
def check_closed_forms(rng):
    print("== 1. erf closed forms vs Monte-Carlo (4e6 samples) ==")
    worst = 0.0
    for q1, q2, c in [(0.5, 1.3, 0.4), (2.0, 0.7, -0.9), (1.0, 1.0, 0.99)]:
        L = np.linalg.cholesky(np.array([[q1, c], [c, q2]]))
        z = rng.standard_normal((4_000_000, 2)) @ L.T
        mc1 = np.mean(erf(z[:, 0]) * erf(z[:, 1]))
        mc2 = np.mean(derf(z[:, 0]) * derf(z[:, 1]))
        cf1, cf2 = V_erf(q1, q2, c), V_derf(q1, q2, c)
        print(f"  (q1,q2,c)=({q1},{q2},{c}): V_erf {cf1:.5f} mc {mc1:.5f} | V_derf {cf2:.5f} mc {mc2:.5f}")
        worst = max(worst, abs(cf1 - mc1), abs(cf2 - mc2))
    print(f"  max abs diff = {worst:.2e}")
    assert worst < 5e-3
    return worst


# ---------------------------------------------------------------------------
def check_T1(rng):
    print("== 2. RNN with T=1 == 1-hidden-layer erf network ==")
    sw, su, sb, sv = 1.3, 0.9, 0.5, 1.2
    d = 4
    X = rng.standard_normal((5, d))
    nngp, ntk = rnn_erf_ntk([x[None] for x in X], [x[None] for x in X], sw, su, sb, sv)
    # one hidden layer: h = su U x/sqrt(d) + sb beta, f = sv v.erf(h)/sqrt(n)
    K = su**2 * X @ X.T / d + sb**2
    q = np.diag(K)
    arg = 2 * K / np.sqrt(np.outer(1 + 2 * q, 1 + 2 * q))
    E_ss = 2 / np.pi * np.arcsin(arg)
    E_dd = 4 / np.pi / np.sqrt(np.outer(1 + 2 * q, 1 + 2 * q) - 4 * K**2)
    nngp_ref = sv**2 * E_ss
    ntk_ref = sv**2 * E_ss + sv**2 * E_dd * K  # readout + (U and b) first layer
    e1, e2 = rel(nngp, nngp_ref), rel(ntk, ntk_ref)
    print(f"  max rel diff nngp {e1:.2e}, ntk {e2:.2e}")
    assert e1 < 1e-13 and e2 < 1e-13
    return max(e1, e2)


# ---------------------------------------------------------------------------
class FiniteRNN:
    """Finite-width simple erf RNN in NTK parametrization, manual backprop."""

    def __init__(self, n, d, sw, su, sb, sv, rng):
        self.n, self.d = n, d
        self.sw, self.su, self.sb, self.sv = sw, su, sb, sv
        self.W = rng.standard_normal((n, n))
        self.U = rng.standard_normal((n, d))
        self.beta = rng.standard_normal(n)
        self.v = rng.standard_normal(n)

    def forward(self, xs):
        n, d = self.n, self.d
        hs, ss = [], []
        for t, xi in enumerate(xs):
            h = self.su * self.U @ xi / np.sqrt(d) + self.sb * self.beta
            if t > 0:
                h = h + self.sw * self.W @ ss[-1] / np.sqrt(n)
            hs.append(h)
            ss.append(erf(h))
        f = self.sv * self.v @ ss[-1] / np.sqrt(n)
        return f, hs, ss

    def grads(self, xs):
        """Returns f, dict of true gradients df/dparam, and the list of sqrt(n) df/dh^t."""
        n, d = self.n, self.d
        f, hs, ss = self.forward(xs)
        T = len(xs)
        gW = np.zeros((n, n))
        gU = np.zeros((n, d))
        gb = np.zeros(n)
        gv = self.sv * ss[-1] / np.sqrt(n)
        gs = self.sv * self.v / np.sqrt(n)  # df/ds^T
        ghs = [None] * T
        for t in range(T - 1, -1, -1):
            gh = gs * derf(hs[t])
            ghs[t] = gh
            gU += self.su * np.outer(gh, xs[t]) / np.sqrt(d)
            gb += self.sb * gh
            if t > 0:
                gW += self.sw * np.outer(gh, ss[t - 1]) / np.sqrt(n)
                gs = self.sw * self.W.T @ gh / np.sqrt(n)
        return f, dict(W=gW, U=gU, b=gb, v=gv), [np.sqrt(n) * g for g in ghs], ss


def check_rnn_grad_fd(rng):
    """Finite-difference check of the manual backprop (small width)."""
    net = FiniteRNN(50, 3, 1.2, 0.8, 0.5, 1.1, rng)
    xs = rng.standard_normal((4, 3))
    _, g, _, _ = net.grads(xs)
    eps = 1e-6
    worst = 0.0
    for name, attr in [("W", "W"), ("U", "U"), ("b", "beta"), ("v", "v")]:
        P = getattr(net, attr)
        D = rng.standard_normal(P.shape)
        P += eps * D
        fp = net.forward(xs)[0]
        P -= 2 * eps * D
        fm = net.forward(xs)[0]
        P += eps * D
        fd = (fp - fm) / (2 * eps)
        an = np.sum(g[name] * D)
        worst = max(worst, abs(fd - an) / max(abs(an), 1e-12))
    print(f"  manual backprop vs finite differences: max rel err {worst:.1e}")
    assert worst < 1e-6


def check_rnn_mc(rng, n, seeds, params):
    sw, su, sb, sv = params
    d = 4
    lengths = [3, 5, 4]
    xs = [rng.standard_normal((T, d)) for T in lengths]
    nngp_ref, ntk_ref = rnn_erf_ntk(xs, xs, sw, su, sb, sv)
    ntk_emp = np.zeros((3, 3))
    nngp_emp = np.zeros((3, 3))
    # empirical E[dh^t dh'^r] tables, to check the lockstep structure
    on, off = [], []
    t0 = time.time()
    for s in range(seeds):
        net = FiniteRNN(n, d, sw, su, sb, sv, np.random.default_rng(1000 + s))
        out = [net.grads(x) for x in xs]
        for i in range(3):
            for j in range(3):
                gi, gj = out[i][1], out[j][1]
                ntk_emp[i, j] += sum(np.sum(gi[k] * gj[k]) for k in gi) / seeds
                nngp_emp[i, j] += sv**2 * (out[i][3][-1] @ out[j][3][-1]) / n / seeds
                if s == 0 and i != j:
                    Ti, Tj = lengths[i], lengths[j]
                    for t in range(Ti):
                        for r in range(Tj):
                            val = abs(out[i][2][t] @ out[j][2][r] / n)
                            (on if (Ti - t) == (Tj - r) else off).append(val)
        del out, net
    print(f"  width n={n}, {seeds} seeds, sigmas (w,u,b,v)={params}, time {time.time() - t0:.1f}s")
    np.set_printoptions(precision=4, suppress=True)
    print("  NTK reference:\n", ntk_ref)
    print("  NTK finite-width (seed average):\n", ntk_emp)
    print("  NNGP reference:\n", nngp_ref)
    print("  NNGP finite-width sv^2 s^T.s'^T'/n:\n", nngp_emp)
    e_ntk, e_nngp = rel(ntk_emp, ntk_ref), rel(nngp_emp, nngp_ref)
    print(f"  max rel err (normalised by max entry): NTK {e_ntk:.3e}, NNGP {e_nngp:.3e}")
    print(f"  max abs err: NTK {np.max(np.abs(ntk_emp - ntk_ref)):.3e}, NNGP {np.max(np.abs(nngp_emp - nngp_ref)):.3e}")
    print(f"  lockstep (cross pairs, seed 0): mean |E dh dh'| on lockstep diagonal {np.mean(on):.3e}, "
          f"off-lockstep mean {np.mean(off):.3e} max {np.max(off):.3e} (O(1/sqrt n)={1 / np.sqrt(n):.3e})")
    assert e_ntk < 1e-1 and e_nngp < 1e-1
    return e_ntk, e_nngp, np.mean(on), np.max(off)


# ---------------------------------------------------------------------------
def check_mlp_mc(rng, n=2000, seeds=3):
    print("== 4. ReLU MLP vs finite width ==")
    depth, sw, sb, d = 2, 1.4, 0.3, 5
    X = rng.standard_normal((4, d))
    nngp_ref, ntk_ref = mlp_relu_ntk(X, X, depth, sw, sb)
    ntk_emp = np.zeros((4, 4))
    for s in range(seeds):
        r = np.random.default_rng(2000 + s)
        dims = [d] + [n] * depth + [1]
        Ws = [r.standard_normal((dims[l + 1], dims[l])) for l in range(depth + 1)]
        bs = [r.standard_normal(dims[l + 1]) for l in range(depth + 1)]
        grads = []
        for x in X:
            acts, pres = [x], []
            for l in range(depth + 1):
                h = sw * Ws[l] @ acts[-1] / np.sqrt(dims[l]) + sb * bs[l]
                pres.append(h)
                acts.append(np.maximum(h, 0) if l < depth else h)
            g = []
            gh = np.ones(1)
            for l in range(depth, -1, -1):
                g.append(sw * np.outer(gh, acts[l]) / np.sqrt(dims[l]))
                g.append(sb * gh)
                if l > 0:
                    gh = (sw * Ws[l].T @ gh / np.sqrt(dims[l])) * (pres[l - 1] > 0)
            grads.append(g)
        for i in range(4):
            for j in range(4):
                ntk_emp[i, j] += sum(np.sum(a * b) for a, b in zip(grads[i], grads[j])) / seeds
    e = rel(ntk_emp, ntk_ref)
    print("  NTK reference:\n", ntk_ref, "\n  finite width:\n", ntk_emp)
    print(f"  max rel err {e:.3e}")
    assert e < 1e-1
    return e


def check_arora():
    print("== 5. Arora toy NTK ==")
    np.random.seed(1)
    x = np.random.random(10)
    y = np.random.random(10)
    x /= np.linalg.norm(x)
    y /= np.linalg.norm(y)
    txy, txx = arora_toy_ntk(x, y), arora_toy_ntk(x, x)
    print(f"  Theta(x,y) = {txy!r}  (expected 2.4287229440232556, diff {txy - 2.4287229440232556:.1e})")
    print(f"  Theta(x,x) = {txx!r}  (expected 4)")
    assert abs(txy - 2.4287229440232556) < 1e-12 and abs(txx - 4) < 1e-12
    d = 10
    _, t = mlp_relu_ntk(x[None] * np.sqrt(d / 2), y[None] * np.sqrt(d / 2), 3, np.sqrt(2), 0.0)
    print(f"  mlp_relu_ntk(sqrt(d/2) x, sqrt(d/2) y, depth=3, sw=sqrt 2, sb=0) = {t[0, 0]!r}")
    assert abs(t[0, 0] - txy) < 1e-12
    return txy, txx


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    check_closed_forms(rng)
    check_T1(rng)
    print("== 3. RNN vs finite-width simulation ==")
    check_rnn_grad_fd(rng)
    check_rnn_mc(np.random.default_rng(7), n=3000, seeds=3, params=(1.2, 1.0, 0.4, 1.1))
    check_rnn_mc(np.random.default_rng(8), n=3000, seeds=3, params=(1.0, 1.0, 0.0, 1.0))
    print("  -- width sweep (same sequences/params as the first run) --")
    sweep = {}
    for n in (1000, 4000):
        sweep[n] = check_rnn_mc(np.random.default_rng(7), n=n, seeds=3, params=(1.2, 1.0, 0.4, 1.1))
    print("  sweep summary (n: NTK rel err, NNGP rel err):",
          {n: (round(v[0], 4), round(v[1], 4)) for n, v in sweep.items()})
    check_mlp_mc(rng)
    check_arora()
    print("ALL CHECKS PASSED")
