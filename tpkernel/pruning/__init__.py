r"""Random pruning as a first-class citizen (Yang & Wang, *On the Neural Tangent Kernel
Analysis of Randomly Pruned Neural Networks*, AISTATS 2023, arXiv 2203.14328).

A matrix, input layer or readout may carry a :class:`~tpkernel.ir.Mask`: entries kept
independently with probability q = 1 − p, pruned entries fixed at 0 and never trained,
optionally rescaled by 1/√q.  Everything else in tpkernel reads masks:

- the limit (:func:`tpkernel.kernels`): a masked use multiplies the forward covariance it
  creates, and the parameter's NTK contribution, by q (1 with rescaling); a masked input
  layer with a fixed input dimension is the exact Gaussian scale mixture over each row's
  kept inputs (:mod:`tpkernel.limit.mixture`);
- finite width (:mod:`tpkernel.finite`): Bernoulli masks from the seed, gradients of kept
  weights only;
- listings (``mask=0.5 rescale``), drawings (M⊙W in red), formulas (factors q_W).

This package adds the transformations and experiments:

- :func:`prune`, :func:`dense`, :func:`pseudo_network` (Program → Program);
- :func:`extra_scaling`: Θ_pruned / Θ where it is a constant (q^m for a bias-free ReLU MLP
  with m pruned layers), and why not where it is not;
- :func:`compare`: pruned, pseudo and dense networks at finite width side by side;
- :func:`width_study`: the NTK gap over widths and pruning probabilities, the width needed
  for a target gap and its fit against 1/(1 − p).

See docs/pruning.md.
"""

from ..ir import Mask
from .scaling import ExtraScaling, extra_scaling, homogeneity_degree, structural_scaling
from .study import SideBySide, WidthStudy, compare, width_study
from .transform import WHERE, dense, masked, prunable, prune, pseudo_network

__all__ = [
    "Mask", "prune", "dense", "pseudo_network", "masked", "prunable", "WHERE",
    "extra_scaling", "ExtraScaling", "structural_scaling", "homogeneity_degree",
    "compare", "SideBySide", "width_study", "WidthStudy",
]
