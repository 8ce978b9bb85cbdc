r"""Finite width: run any program at width n, and check it against the limit.

- :func:`sample` / :class:`Network`: parameters drawn as the NTK parametrization says
  (one draw per parameter node: weight sharing), forward and backward passes over a batch
  (vectors are (n, N) arrays), per-parameter gradients;
- :func:`empirical_kernels`: the empirical NNGP and the exact finite-width NTK, as the
  limit's sum over parameter uses with (1/n) Σ_α in place of expectations;
- :func:`convergence`: relative Frobenius errors against the limit over widths and seeds,
  and their log-log slope (expected −1/2);
- :func:`train`: full-batch gradient descent on the MSE (compare with
  :mod:`tpkernel.dynamics`, kernel gradient descent with the limiting NTK).

See docs/finite.md.
"""

from .convergence import Convergence, convergence, relative_error
from .kernels import empirical_kernels, nngp_from_evaluations, ntk_from_evaluations
from .network import Evaluation, Network, ParamInfo, param_infos, readout_bias_key, sample
from .training import Trajectory, mse_loss, train

__all__ = [
    "sample", "Network", "Evaluation", "ParamInfo", "param_infos", "readout_bias_key",
    "empirical_kernels", "ntk_from_evaluations", "nngp_from_evaluations",
    "convergence", "Convergence", "relative_error", "train", "Trajectory", "mse_loss",
]
