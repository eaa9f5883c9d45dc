"""nagmom: classical momentum and exact Nesterov momentum for Optax.

The transforms, momentum schedules and sparse initializations of Sutskever, Martens, Dahl & Hinton,
"On the importance of initialization and momentum in deep learning", ICML 2013.
"""

from nagmom import initializers
from nagmom import schedules
from nagmom._momentum import MomentumState
from nagmom._momentum import NesterovState
from nagmom._momentum import ScaleByMomentumState
from nagmom._momentum import ScaleByNesterovState
from nagmom._momentum import momentum
from nagmom._momentum import nesterov
from nagmom._momentum import nesterov_eval_params
from nagmom._momentum import scale_by_momentum
from nagmom._momentum import scale_by_nesterov

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
