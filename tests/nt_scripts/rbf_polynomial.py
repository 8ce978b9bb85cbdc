"""The RBF dual activation, a monomial and a polynomial (Wick's theorem)."""
import numpy as np
from neural_tangents import stax

_, _, kernel_fn = stax.serial(
    stax.Dense(256, W_std=1.0, b_std=0.1), stax.Rbf(gamma=0.5),
    stax.Dense(256, W_std=0.8, b_std=0.1), stax.Monomial(3),
    stax.Dense(256, W_std=0.9, b_std=0.2), stax.Polynomial([0.1, 1.0, 0.5, -0.2]),
    stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(12)
x1 = rng.standard_normal((4, 4))
x2 = rng.standard_normal((3, 4))
k = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_12': k.nngp, 'ntk_12': k.ntk}
