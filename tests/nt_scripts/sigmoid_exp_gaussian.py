"""Sigmoid_like, Gaussian and Exp layers (small weights keep the exponential moderate)."""
import numpy as np
from neural_tangents import stax

_, _, kernel_fn = stax.serial(
    stax.Dense(256, W_std=1.5, b_std=0.1), stax.Sigmoid_like(),
    stax.Dense(256, W_std=1.2, b_std=0.1), stax.Gaussian(a=1.0, b=-1.0),
    stax.Dense(256, W_std=0.6, b_std=0.1), stax.Exp(a=0.8, b=0.5),
    stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(7)
x1 = rng.standard_normal((5, 4))
x2 = rng.standard_normal((2, 4))
k11 = kernel_fn(x1, None, ('nngp', 'ntk'))
k12 = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_11': k11.nngp, 'ntk_11': k11.ntk, 'nngp_12': k12.nngp, 'ntk_12': k12.ntk}
