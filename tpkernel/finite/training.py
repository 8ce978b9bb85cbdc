r"""Full-batch gradient descent on the mean squared error, at finite width.

Loss (as in neural-tangents' ``predict.gradient_descent_mse``):

  L(θ) = 1/(2N) Σ_i (f(ξ_i) − y_i)²,

step ``θ_p ← θ_p − η · lr_p · ∂L/∂θ_p`` for every trained variable p (the N(0, 1) draws of
the NTK parametrization; ``lr_p`` the parameter's learning-rate multiplier), with the
gradients from the backward program (:meth:`Network.vjp`, cotangent (f − y)/N).  To first
order in η this moves the outputs by −(η/N) Θ̂ (f − y): kernel gradient descent with the
empirical NTK Θ̂ (see :mod:`tpkernel.dynamics` for the limiting side).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import NumericalError, ShapeError, check_learning_rate, finite_array
from .network import Network

Array = np.ndarray
#: a loss above this many times its initial scale (max of the loss, ½ mean y², ½ mean f_0²) is a
#: diverged run: the outputs have grown a millionfold; gradient descent that converges, even
#: through a catapult phase, stays far below it
BLOWUP = 1e12


def mse_loss(f: Array, y: Array) -> float:
    """1/(2N) Σ_i (f_i − y_i)²."""
    return float(0.5 * np.mean((np.asarray(f) - np.asarray(y)) ** 2))


@dataclass
class Trajectory:
    """A training run: outputs on the train (and test) inputs after each recorded step.

    ``steps`` (R,), ``f_train`` (R, N), ``f_test`` (R, M) or None, ``loss`` (R,);
    ``network`` is the trained network.
    """

    steps: Array
    f_train: Array
    f_test: Array | None
    loss: Array
    learning_rate: float
    network: Network = field(repr=False)

    @property
    def df_train(self) -> Array:
        """f_t − f_0 on the training inputs (R, N)."""
        return self.f_train - self.f_train[0]

    @property
    def df_test(self) -> Array | None:
        """f_t − f_0 on the test inputs (R, M)."""
        return None if self.f_test is None else self.f_test - self.f_test[0]


def train(network: Network, x, y, *, learning_rate: float, steps: int, x_test=None, lengths=None,
          lengths_test=None, output: str | None = None, record_every: int = 1,
          inplace: bool = False) -> Trajectory:
    """Full-batch gradient descent on 1/(2N) Σ (f − y)² for ``steps`` steps.

    ``network`` is copied unless ``inplace``; outputs on ``x`` (and ``x_test``) are
    recorded every ``record_every`` steps and after the last one.  A diverging run is a
    NumericalError naming the step: outputs or an update that are not finite, or a loss above
    :data:`BLOWUP` times its initial scale.
    """
    if steps < 0 or record_every < 1:
        raise ValueError("steps must be >= 0 and record_every >= 1")
    check_learning_rate(learning_rate)
    net = network if inplace else network.copy()
    y = finite_array("y", y).reshape(-1)
    rec_steps, f_tr, f_te, losses = [], [], [], []

    def record(t: int, f: Array) -> None:
        rec_steps.append(t)
        f_tr.append(f.copy())
        losses.append(mse_loss(f, y))
        if x_test is not None:
            f_te.append(net.apply(x_test, lengths_test, output=output))

    scale = None
    for t in range(steps + 1):
        last = t == steps
        ev = net.evaluate(x, lengths, output=output, backward=not last)
        if ev.N != y.shape[0]:
            raise ShapeError(f"y has {y.shape[0]} targets for {ev.N} training examples")
        if not np.all(np.isfinite(ev.f)):
            raise NumericalError(f"training diverged at step {t}: the outputs are not finite "
                                 f"(learning rate {learning_rate} too large?)")
        loss = mse_loss(ev.f, y)
        if scale is None:  # the initial scale of the loss, of the targets and of the outputs
            scale = max(loss, 0.5 * float(np.mean(y * y)), 0.5 * float(np.mean(ev.f * ev.f)), 1e-300)
        elif loss > BLOWUP * scale:
            raise NumericalError(f"training diverged at step {t}: the loss {loss:.3g} is more than {BLOWUP:g} times "
                                 f"its initial scale {scale:.3g} (outputs up to {float(np.max(np.abs(ev.f))):.3g}); "
                                 f"learning rate {learning_rate} too large (gradient descent on the MSE is stable "
                                 "below about 2N/λ_max of the network's NTK)")
        if last or t % record_every == 0:
            record(t, ev.f)
        if last:
            break
        # the step -η lr_p ∂L/∂θ_p: the factor -η/N folded into the cotangent (cheap), then in place
        steps_ = net.vjp(x, -learning_rate * (ev.f - y) / ev.N, evaluation=ev)
        for key, d in steps_.items():
            lr_p = net.infos[key].lr
            if lr_p != 1.0:
                d *= lr_p
            if not np.all(np.isfinite(d)):
                raise NumericalError(f"training diverged at step {t}: the update of parameter {key!r} is not finite "
                                     f"(learning rate {learning_rate} too large?)")
            net.params[key] += d
    return Trajectory(np.asarray(rec_steps), np.asarray(f_tr), np.asarray(f_te) if x_test is not None else None,
                      np.asarray(losses), float(learning_rate), net)
