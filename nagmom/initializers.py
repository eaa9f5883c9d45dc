"""Initializers of Sutskever et al. (2013), following the ``jax.nn.initializers`` protocol."""

from nagmom._initializers import echo_state
from nagmom._initializers import sparse

__all__ = (
    "echo_state",
    "sparse",
)
