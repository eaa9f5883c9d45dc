"""Momentum schedules of Sutskever et al. (2013), as ``optax.Schedule`` functions."""

from nagmom._schedules import sutskever_momentum, with_final_phase

__all__ = (
    "sutskever_momentum",
    "with_final_phase",
)
