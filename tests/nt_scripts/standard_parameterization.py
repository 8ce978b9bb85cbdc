"""parameterization='standard' (Sohl-Dickstein et al. 2020): the NTK depends on the widths."""
import numpy as np
from neural_tangents import stax

_, _, kernel_fn = stax.serial(
    stax.Dense(300, W_std=1.4, b_std=0.1, parameterization='standard'), stax.Erf(),
    stax.Dense(200, W_std=1.2, b_std=0.3, parameterization='standard'), stax.Relu(),
    stax.Dense(100, W_std=1.5, parameterization='standard'), stax.Gelu(),
    stax.Dense(1, W_std=1.1, b_std=0.2, parameterization='standard'))

rng = np.random.default_rng(9)
x1 = rng.standard_normal((4, 7))
x2 = rng.standard_normal((5, 7))
k = kernel_fn(x1, x2, ('nngp', 'ntk'))
RESULTS = {'nngp_12': k.nngp, 'ntk_12': k.ntk}
