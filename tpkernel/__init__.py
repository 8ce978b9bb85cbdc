"""tpkernel: neural architectures as tensor programs, and their infinite-width limits.

>>> import tpkernel as tp
>>> p = tp.examples.mlp(depth=2)
>>> K = tp.kernels(p, X)          # K.nngp, K.ntk
"""

from . import dynamics, examples, finite, nonlin
from .backward import backward
from .builder import (abrelu, abs, apply, cos, erf, exp, gaussian, gelu, leaky_relu,
                      power, relu, sigmoid, sin, softplus, swish, tanh)
from .errors import (AccuracyWarning, DataTypeError, NotBPLikeError, NumericalError, ProgramError, ShapeError,
                     TPKernelError, UnknownNonlinearityError)
from .builder import Program
from .limit import Kernels, kernels
from . import listing, stax
from .listing import ListingError, parse, parse_file
from .symbolic import formulas
from .draw import draw, draw_sgd
from . import pruning
from .ir import Mask

__version__ = "0.1.0"

__all__ = [
    "Program", "kernels", "Kernels", "backward", "examples", "nonlin", "finite", "dynamics",
    "relu", "erf", "tanh", "gelu", "sin", "cos", "exp", "sigmoid", "softplus", "swish", "abrelu",
    "leaky_relu", "abs", "gaussian", "power", "apply",
    "TPKernelError", "DataTypeError", "ProgramError", "NotBPLikeError", "UnknownNonlinearityError", "ShapeError",
    "NumericalError", "AccuracyWarning", "formulas",
    "stax", "listing", "parse", "parse_file", "ListingError",
    "draw", "draw_sgd", "pruning", "Mask",
]
