"""Identity layers, a network that ends in a nonlinearity (its kernel is that of one output
coordinate), and every form of `get`."""
import numpy as np
from neural_tangents import stax

_, _, kernel_fn = stax.serial(
    stax.Identity(), stax.Dense(512, W_std=1.4, b_std=0.1), stax.Erf(a=1.2, b=0.8, c=0.1),
    stax.Identity(), stax.Dense(512, W_std=1.1, b_std=0.1), stax.Gelu(), stax.Identity(),
    stax.Dense(512, W_std=1.2, b_std=0.3), stax.Sin(a=1.0, b=1.5, c=0.2))

rng = np.random.default_rng(13)
x1 = rng.standard_normal((5, 6))
x2 = rng.standard_normal((4, 6))
both = kernel_fn(x1, x2, ('ntk', 'nngp'))
kernel = kernel_fn(x1, x2)
RESULTS = {
    'nngp_12': kernel_fn(x1, x2, 'nngp'), 'ntk_12': kernel_fn(x1, x2, 'ntk'),
    'ntk_12_tuple': both.ntk, 'nngp_12_tuple': both.nngp,
    'nngp_12_kernel': kernel.nngp, 'ntk_12_kernel': kernel.ntk,
    'nngp_11': kernel_fn(x1, None, 'nngp'), 'ntk_11': kernel_fn(x1, None, 'ntk'),
    'cov1': kernel_fn(x1, x2, 'cov1'), 'cov2': kernel_fn(x1, x2, 'cov2'),
}
