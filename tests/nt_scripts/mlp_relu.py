"""A deep ReLU network in NTK parameterization (the classic infinite-width MLP)."""
import numpy as np
from neural_tangents import stax

init_fn, apply_fn, kernel_fn = stax.serial(
    stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
    stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
    stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
    stax.Dense(1, W_std=1.5, b_std=0.05))

rng = np.random.default_rng(1)
x1 = rng.standard_normal((5, 6))
x2 = rng.standard_normal((4, 6))

k12 = kernel_fn(x1, x2, ('nngp', 'ntk'))
k11 = kernel_fn(x1, None, ('nngp', 'ntk'))
RESULTS = {'nngp_12': k12.nngp, 'ntk_12': k12.ntk, 'nngp_11': k11.nngp, 'ntk_11': k11.ntk}
