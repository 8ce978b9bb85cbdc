"""The infinite-width limit (Master Theorem) interpretation of programs."""

from .kernels import Kernels, kernels
from .numeric import Expectations, Report, Settings, Side

__all__ = ["Kernels", "kernels", "Expectations", "Report", "Settings", "Side"]
