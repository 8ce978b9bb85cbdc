"""Erf networks: a*erf(b*x) + c with several (a, b, c), and the Kernel object of get=None."""
import numpy as np
from neural_tangents import stax

_, _, kernel_fn = stax.serial(
    stax.Dense(256, W_std=1.3, b_std=0.2), stax.Erf(),
    stax.Dense(256, W_std=1.1, b_std=0.1), stax.Erf(a=0.7, b=1.4, c=0.2),
    stax.Dense(256, W_std=0.9), stax.Erf(a=2.0, b=0.5, c=-0.3),
    stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(2)
x1 = rng.standard_normal((5, 3))
x2 = rng.standard_normal((3, 3))

k = kernel_fn(x1, x2)           # get=None: a Kernel with .nngp and .ntk
k11 = kernel_fn(x1)
RESULTS = {'nngp_12': k.nngp, 'ntk_12': k.ntk, 'nngp_11': k11.nngp, 'ntk_11': k11.ntk}
