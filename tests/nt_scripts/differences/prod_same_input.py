"""erf(h) * gelu(h): FanInProd of two nonlinearities of the same pre-activation.
neural-tangents multiplies the branch kernels as if the branches were independent."""
import numpy as np
from neural_tangents import stax

W1, B1, WV, BV = 1.3, None, 1.0, 0.1
_, _, kernel_fn = stax.serial(
    stax.Dense(512, W_std=W1, b_std=B1),
    stax.FanOut(2), stax.parallel(stax.Erf(), stax.Gelu()), stax.FanInProd(),
    stax.Dense(1, W_std=WV, b_std=BV))

x1 = np.random.default_rng(22).standard_normal((4, 3))
k = kernel_fn(x1, None, ('nngp', 'ntk'))
RESULTS = {'nngp_11': k.nngp, 'ntk_11': k.ntk}
