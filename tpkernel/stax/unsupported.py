"""The neural-tangents layers tpkernel does not compile (yet), and why."""

from __future__ import annotations



from .core import Layer, UnsupportedLayerError


# -- what tpkernel does not compile -----------------------------------------------------

def LayerNorm(axis=-1, eps: float = 1e-12, batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    """Not supported yet: layer normalisation needs the Moment instruction of NETSOR⊤+ (a scalar
    (1/n)Σ_α ψ(x_α)), which the engine does not have yet."""
    raise UnsupportedLayerError("LayerNorm is not supported yet: it needs scalar Moment instructions "
                                "(NETSOR⊤+), which tpkernel's engine does not have yet")


_UNSUPPORTED = {  # neural-tangents layers tpkernel does not compile, and why
    "Conv": "convolutions", "ConvTranspose": "convolutions", "ConvLocal": "convolutions",
    "AvgPool": "pooling", "SumPool": "pooling", "GlobalAvgPool": "pooling", "GlobalSumPool": "pooling",
    "Flatten": "spatial dimensions", "GlobalSelfAttention": "attention needs NETSOR⊤+ scalars",
    "Dropout": "dropout", "ImageResize": "images", "Index": "indexing", "Aggregate": "graph aggregation",
    "DotGeneral": "general tensor contractions", "ExpNormalized": "normalised exponentials need NETSOR⊤+ scalars",
    "Hermite": "normalised Hermite layers", "RectifiedMonomial": "rectified monomials",
    "Sign": "the sign function, whose derivative is zero almost everywhere", "Gabor": "Gabor",
}


def __getattr__(name: str):
    if name in _UNSUPPORTED:
        what = _UNSUPPORTED[name]

        def unsupported(*args, **kwargs):
            raise UnsupportedLayerError(f"stax.{name} is not supported by tpkernel.stax ({what}): tpkernel "
                                        "compiles fully connected networks of (N, d) inputs")
        unsupported.__name__ = name
        return unsupported
    raise AttributeError(f"module 'tpkernel.stax' has no attribute {name!r}")
