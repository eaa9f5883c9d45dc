"""Momentum schedules of Sutskever et al. (2013), as ``optax.Schedule`` functions."""

from nagmom._schedules import rnn_momentum
from nagmom._schedules import sutskever_momentum
from nagmom._schedules import with_final_phase

__all__ = (
    "rnn_momentum",
    "sutskever_momentum",
    "with_final_phase",
)
