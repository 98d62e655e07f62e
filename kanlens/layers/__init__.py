"""KAN layers: spline (KANLayer), symbolic (SymbolicKANLayer), multiplication nodes (``mult``), the fused
multi-layer kernel (``stack``) and convolution layers."""

from .conv import KANConv1d, KANConv2d
from .spline import KANLayer

__all__ = ["KANConv1d", "KANConv2d", "KANLayer"]
