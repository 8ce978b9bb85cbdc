"""The infinite-width limit (Master Theorem) interpretation of programs."""

from .kernels import Kernels, kernels
from .moments import Moments, Report, Settings, Side

__all__ = ["Kernels", "kernels", "Moments", "Report", "Settings", "Side"]
