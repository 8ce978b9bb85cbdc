"""Multiplicative gating (FanInProd of independent branches) and channel concatenation
(FanInConcat of branches of different widths, read by a Dense)."""
import numpy as np
from neural_tangents import stax

gate = stax.serial(
    stax.FanOut(2),
    stax.parallel(stax.serial(stax.Dense(512, W_std=1.3, b_std=0.1), stax.Erf()),
                  stax.serial(stax.Dense(512, W_std=1.5, b_std=0.2), stax.Relu())),
    stax.FanInProd())
concat = stax.serial(
    stax.FanOut(2),
    stax.parallel(stax.Dense(256, W_std=1.1, b_std=0.1),
                  stax.serial(stax.Dense(512, W_std=1.4), stax.Gelu(), stax.Dense(768, W_std=0.9))),
    stax.FanInConcat())

_, _, kernel_fn = stax.serial(
    stax.Dense(512, W_std=1.0, b_std=0.1), stax.Relu(),
    gate,
    stax.Dense(512, W_std=1.2, b_std=0.1), stax.Sin(),
    concat,
    stax.Dense(512, W_std=1.3, b_std=0.05), stax.Erf(),
    stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(8)
x1 = rng.standard_normal((4, 3))
x2 = rng.standard_normal((3, 3))
k = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_12': k.nngp, 'ntk_12': k.ntk}
