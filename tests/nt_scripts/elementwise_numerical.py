"""A nonlinearity without a closed form, integrated numerically (ElementwiseNumerical).
neural-tangents uses deg x deg Gauss-Hermite nodes; deg=300 is converged (deg=25 is ~5e-3 off)."""
import numpy as np
from neural_tangents import stax

try:
    import jax.numpy as xnp
except ImportError:
    import numpy as xnp


def soft_tanh(x):
    return xnp.tanh(x) + 0.1 * x


_, _, kernel_fn = stax.serial(
    stax.Dense(512, W_std=1.3, b_std=0.1), stax.ElementwiseNumerical(soft_tanh, deg=300),
    stax.Dense(512, W_std=1.2, b_std=0.1), stax.ElementwiseNumerical(soft_tanh, deg=300),
    stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(11)
x1 = rng.standard_normal((4, 3))
x2 = rng.standard_normal((3, 3))
k = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_12': k.nngp, 'ntk_12': k.ntk}
