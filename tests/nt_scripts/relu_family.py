"""The piecewise-linear family: ABRelu, LeakyRelu and Abs in one network."""
import numpy as np
from neural_tangents import stax

_, _, kernel_fn = stax.serial(
    stax.Dense(512, W_std=1.4, b_std=0.1), stax.ABRelu(a=-0.3, b=1.2),
    stax.Dense(512, W_std=1.3, b_std=0.1), stax.LeakyRelu(alpha=0.1),
    stax.Dense(512, W_std=1.1), stax.Abs(),
    stax.Dense(1, W_std=1.0, b_std=0.2))

rng = np.random.default_rng(6)
x1 = rng.standard_normal((6, 5))
x2 = rng.standard_normal((4, 5))
k = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_12': k.nngp, 'ntk_12': k.ntk}
