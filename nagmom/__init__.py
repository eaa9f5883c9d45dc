"""nagmom: classical momentum and exact Nesterov momentum for Optax.

The transforms, momentum schedules and sparse initializations of Sutskever, Martens, Dahl & Hinton,
"On the importance of initialization and momentum in deep learning", ICML 2013.
"""

from nagmom import initializers, schedules
from nagmom._momentum import (
    MomentumState,
    NesterovState,
    ScaleByMomentumState,
    ScaleByNesterovState,
    momentum,
    nesterov,
    nesterov_eval_params,
    scale_by_momentum,
    scale_by_nesterov,
)

__version__ = "0.1.0"

__all__ = (
    "MomentumState",
    "NesterovState",
    "ScaleByMomentumState",
    "ScaleByNesterovState",
    "initializers",
    "momentum",
    "nesterov",
    "nesterov_eval_params",
    "scale_by_momentum",
    "scale_by_nesterov",
    "schedules",
)
