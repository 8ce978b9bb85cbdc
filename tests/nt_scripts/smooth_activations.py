"""Gelu, Sin and Cos with input scales and phases."""
import numpy as np
from neural_tangents import stax

_, _, kernel_fn = stax.serial(
    stax.Dense(128, W_std=1.2, b_std=0.1), stax.Gelu(),
    stax.Dense(128, W_std=1.0, b_std=0.2), stax.Sin(a=0.8, b=1.2, c=0.3),
    stax.Dense(128, W_std=1.1, b_std=0.1), stax.Cos(a=1.1, b=0.7, c=-0.4),
    stax.Dense(128, W_std=1.0), stax.Sin(),
    stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(5)
x1 = rng.standard_normal((4, 3))
x2 = rng.standard_normal((4, 3))
k11 = kernel_fn(x1, None, ('nngp', 'ntk'))
k12 = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_11': k11.nngp, 'ntk_11': k11.ntk, 'nngp_12': k12.nngp, 'ntk_12': k12.ntk}
