"""KAN layers: spline (KANLayer), symbolic (SymbolicKANLayer) and convolution layers."""

from .spline import KANLayer

__all__ = ["KANLayer"]
