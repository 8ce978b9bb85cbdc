"""A residual block whose skip connection carries relu(h), not a Gaussian
(neural-tangents raises NotImplementedError in FanInSum)."""
import numpy as np
from neural_tangents import stax

W1, B1, W2, B2, W3, B3, WV, BV = 1.0, 0.1, 1.2, 0.1, 1.1, 0.1, 1.0, 0.1
_, _, kernel_fn = stax.serial(
    stax.Dense(512, W_std=W1, b_std=B1), stax.Relu(),
    stax.FanOut(2),
    stax.parallel(stax.serial(stax.Dense(512, W_std=W2, b_std=B2), stax.Relu(),
                              stax.Dense(512, W_std=W3, b_std=B3)),
                  stax.Identity()),
    stax.FanInSum(), stax.Relu(), stax.Dense(1, W_std=WV, b_std=BV))

x1 = np.random.default_rng(24).standard_normal((4, 3))
k = kernel_fn(x1, None, ('nngp', 'ntk'))
RESULTS = {'nngp_11': k.nngp, 'ntk_11': k.ntk}
