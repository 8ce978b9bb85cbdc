"""A user nonlinearity with its closed-form kernels (Elementwise(fn, nngp_fn, d_nngp_fn)):
fn = erf written by hand, with the arcsine kernel and its derivative kernel."""
import numpy as np
from neural_tangents import stax

try:  # the same script runs with neural-tangents (jax) and with tpkernel (numpy)
    import jax.numpy as xnp
    from jax.scipy.special import erf
except ImportError:
    import numpy as xnp
    from scipy.special import erf


def my_erf(x):
    return erf(x)


def nngp_fn(cov12, var1, var2):
    return 2 / np.pi * xnp.arcsin(2 * cov12 / xnp.sqrt((1 + 2 * var1) * (1 + 2 * var2)))


def d_nngp_fn(cov12, var1, var2):
    prod = (1 + 2 * var1) * (1 + 2 * var2)
    return 4 / (np.pi * xnp.sqrt(prod - 4 * cov12 ** 2))


_, _, kernel_fn = stax.serial(
    stax.Dense(512, W_std=1.3, b_std=0.2), stax.Elementwise(my_erf, nngp_fn, d_nngp_fn),
    stax.Dense(512, W_std=1.1, b_std=0.1), stax.Elementwise(my_erf, nngp_fn, d_nngp_fn),
    stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(10)
x1 = rng.standard_normal((4, 5))
x2 = rng.standard_normal((3, 5))
k = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_12': k.nngp, 'ntk_12': k.ntk}
