"""Independent parallel branches joined by FanInSum (a wide, multi-path block)."""
import numpy as np
from neural_tangents import stax

init_fn, apply_fn, kernel_fn = stax.serial(
    stax.Dense(512, W_std=1.2, b_std=0.1), stax.Erf(),
    stax.FanOut(3),
    stax.parallel(stax.Dense(512, W_std=1.0, b_std=0.1),
                  stax.serial(stax.Dense(512, W_std=1.5), stax.Relu(), stax.Dense(512, W_std=1.3, b_std=0.2)),
                  stax.Dense(512, W_std=0.7)),
    stax.FanInSum(), stax.Gelu(),
    stax.Dense(1, W_std=1.0, b_std=0.05))

rng = np.random.default_rng(4)
x1 = rng.standard_normal((5, 4))
x2 = rng.standard_normal((3, 4))
k = kernel_fn(x1, x2, ('ntk', 'nngp'))
RESULTS = {'ntk_12': k.ntk, 'nngp_12': k.nngp}
