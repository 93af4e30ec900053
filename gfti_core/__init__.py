"""GFTI engine: gradient-free textual inversion with forward passes only, on a host-agnostic backend."""
__version__ = "0.1.0"
