"""Plain NumPy float64 references, written from the paper's equations, never from nagmom's code.

Sutskever, Martens, Dahl & Hinton (ICML 2013): eqs. (1)-(2) for classical momentum, (3)-(4) for
Nesterov's accelerated gradient, eq. (5) for the momentum schedule. ``t`` counts the updates already
applied; ``lr(t)`` and ``mu(t)`` are plain Python functions of ``t``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

GradFn = Callable[[int, np.ndarray], np.ndarray]
ScalarFn = Callable[[int], float]


class Trajectory(NamedTuple):
    """Per-update records, row t holding the values after t + 1 updates."""

    theta: np.ndarray  # the paper's iterate theta_{t+1}
    velocity: np.ndarray  # v_{t+1}
    held: np.ndarray  # the parameters an optimizer holds: theta (CM) or theta + mu v (NAG)


def sutskever_mu(t: int, mu_max: float, stage_length: int = 250) -> float:
    """Eq. (5): min(1 - 1 / (2 (floor(t / 250) + 1)), mu_max)."""
    return min(1.0 - 1.0 / (2.0 * (t // stage_length + 1)), mu_max)


def classical_momentum(
    theta0: np.ndarray, grad: GradFn, lr: ScalarFn, mu: ScalarFn, steps: int
) -> Trajectory:
    """Eqs. (1)-(2): v_{t+1} = mu_t v_t - lr_t grad(theta_t); theta_{t+1} = theta_t + v_{t+1}."""
    theta = np.array(theta0, np.float64)
    v = np.zeros_like(theta)
    thetas, vs = [], []
    for t in range(steps):
        v = mu(t) * v - lr(t) * grad(t, theta)
        theta = theta + v
        thetas.append(theta)
        vs.append(v)
    return Trajectory(np.array(thetas), np.array(vs), np.array(thetas))


def nesterov(
    theta0: np.ndarray, grad: GradFn, lr: ScalarFn, mu: ScalarFn, steps: int
) -> Trajectory:
    """Eqs. (3)-(4): the gradient is taken at theta_t + mu_t v_t.

    ``held`` is the look-ahead point after the update, theta_{t+1} + mu_{t+1} v_{t+1}, which is
    what an implementation holding look-ahead parameters stores.
    """
    theta = np.array(theta0, np.float64)
    v = np.zeros_like(theta)
    thetas, vs, held = [], [], []
    for t in range(steps):
        v = mu(t) * v - lr(t) * grad(t, theta + mu(t) * v)
        theta = theta + v
        thetas.append(theta)
        vs.append(v)
        held.append(theta + mu(t + 1) * v)
    return Trajectory(np.array(thetas), np.array(vs), np.array(held))


def nesterov_mu_twice(
    theta0: np.ndarray, grad: GradFn, lr: ScalarFn, mu: ScalarFn, steps: int
) -> Trajectory:
    """A plausible wrong NAG (as Optax and PyTorch do it): mu_t for both velocity and look-ahead.

    Held params: phi_{t+1} = phi_t - lr_t g_t + mu_t v_{t+1}. Used only to show tests can fail.
    """
    phi = np.array(theta0, np.float64)
    v = np.zeros_like(phi)
    phis, vs = [], []
    for t in range(steps):
        g = grad(t, phi)
        v = mu(t) * v - lr(t) * g
        phi = phi - lr(t) * g + mu(t) * v
        phis.append(phi)
        vs.append(v)
    return Trajectory(np.array(phis), np.array(vs), np.array(phis))


def learning_rate_free(grads: np.ndarray, mu: ScalarFn, *, nesterov: bool) -> np.ndarray:
    """Updates of the learning-rate-free forms for a given gradient sequence (rows = steps).

    u_{t+1} = mu_t u_t + g_t; update = u_{t+1} (CM) or g_t + mu_{t+1} u_{t+1} (NAG).
    """
    u = np.zeros_like(grads[0], dtype=np.float64)
    updates = []
    for t, g in enumerate(np.asarray(grads, np.float64)):
        u = mu(t) * u + g
        updates.append(g + mu(t + 1) * u if nesterov else u)
    return np.array(updates)
