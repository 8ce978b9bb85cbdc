"""A pre-activation residual network (the form neural-tangents supports: both inputs of
every FanInSum are Gaussian), three blocks."""
import numpy as np
from neural_tangents import stax


def block(w_std, b_std):
    branch = stax.serial(stax.Relu(), stax.Dense(512, W_std=w_std, b_std=b_std),
                         stax.Relu(), stax.Dense(512, W_std=w_std, b_std=b_std))
    return stax.serial(stax.FanOut(2), stax.parallel(branch, stax.Identity()), stax.FanInSum())


init_fn, apply_fn, kernel_fn = stax.serial(
    stax.Dense(512, W_std=1.0, b_std=0.1),
    block(1.2, 0.1), block(0.8, 0.0), block(1.0, 0.2),
    stax.Relu(), stax.Dense(1, W_std=1.0, b_std=0.1))

rng = np.random.default_rng(3)
x1 = rng.standard_normal((4, 5))
x2 = rng.standard_normal((5, 5))
RESULTS = {'nngp_12': kernel_fn(x1, x2, 'nngp'), 'ntk_12': kernel_fn(x1, x2, 'ntk')}
