"""x + x: FanInSum of two branches that are the same vector (no Dense in between).
neural-tangents adds the branch kernels as if the branches were independent (2K); the
exact kernel of 2h is 4K."""
import numpy as np
from neural_tangents import stax

W1, B1, WV, BV = 1.2, 0.1, 1.0, 0.1
_, _, kernel_fn = stax.serial(
    stax.Dense(512, W_std=W1, b_std=B1),
    stax.FanOut(2), stax.parallel(stax.Identity(), stax.Identity()), stax.FanInSum(),
    stax.Relu(), stax.Dense(1, W_std=WV, b_std=BV))

x1 = np.random.default_rng(21).standard_normal((4, 3))
k = kernel_fn(x1, None, ('nngp', 'ntk'))
RESULTS = {'nngp_11': k.nngp, 'ntk_11': k.ntk}
