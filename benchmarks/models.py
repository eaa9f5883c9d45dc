"""The deep autoencoders of Hinton & Salakhutdinov (2006), as trained by Sutskever et al. (2013).

Logistic hidden units, a linear code layer, a mirrored decoder, and the paper's sparse
initialization on every layer with zero biases. The model returns the output layer's
pre-activations; the task decides whether they pass through a logistic (CURVES, MNIST) or are used
as they are (FACES).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

import nagmom


class Autoencoder(nn.Module):
    """Encoder ``input -> encoder_sizes[0] -> ... -> encoder_sizes[-1]`` (the code), mirrored."""

    encoder_sizes: Sequence[int]
    output_size: int
    init_scale: float = 1.0
    num_connections: int = 15
    initialization: str = "sparse"  # or "dense": Glorot normal times init_scale, to compare

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.initialization == "sparse":
            kernel_init = nagmom.initializers.sparse(self.num_connections, stddev=self.init_scale)
        else:
            kernel_init = nn.initializers.variance_scaling(self.init_scale**2, "fan_avg", "normal")
        dense = functools.partial(
            nn.Dense, kernel_init=kernel_init, bias_init=nn.initializers.zeros
        )
        *hidden, code = self.encoder_sizes
        for size in hidden:
            x = nn.sigmoid(dense(size)(x))
        x = dense(code)(x)  # linear code units
        for size in reversed(hidden):
            x = nn.sigmoid(dense(size)(x))
        return dense(self.output_size)(x)


# Layer sizes of the paper's Table 1 networks (encoder half; the decoder mirrors it).
CurvesAutoencoder = functools.partial(
    Autoencoder, encoder_sizes=(400, 200, 100, 50, 25, 6), output_size=784
)
MnistAutoencoder = functools.partial(
    Autoencoder, encoder_sizes=(1000, 500, 250, 30), output_size=784
)
FacesAutoencoder = functools.partial(
    Autoencoder, encoder_sizes=(2000, 1000, 500, 30), output_size=625
)
# A small network for tests.
TinyAutoencoder = functools.partial(Autoencoder, encoder_sizes=(32, 16, 4), output_size=784)

AUTOENCODERS = {
    "curves": CurvesAutoencoder,
    "mnist": MnistAutoencoder,
    "faces": FacesAutoencoder,
    "tiny": TinyAutoencoder,
}


class SequenceRNN(nn.Module):
    """A tanh RNN with a linear read-out at every step, initialized as in the paper's Sec. 4.

    Input weights N(0, input_scale^2), recurrent weights by echo-state initialization (sparse,
    rescaled to ``spectral_radius``), output weights N(0, output_scale^2), zero hidden biases and
    output biases ``output_bias`` (the mean target, so the initial outputs are unbiased).
    Inputs are time-major, (T, B, input_size); outputs (T, B, output_size).
    """

    hidden_size: int
    output_size: int
    input_scale: float
    output_bias: Sequence[float]
    output_scale: float = 0.1
    spectral_radius: float = 1.1
    num_connections: int = 15

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        cell = nn.SimpleCell(
            self.hidden_size,
            activation_fn=nn.tanh,
            kernel_init=nn.initializers.normal(self.input_scale),
            recurrent_kernel_init=nagmom.initializers.echo_state(
                self.spectral_radius, self.num_connections
            ),
            bias_init=nn.initializers.zeros,
        )
        hidden = nn.RNN(cell, time_major=True)(inputs)
        bias = jnp.asarray(self.output_bias, jnp.float32)
        return nn.Dense(
            self.output_size,
            kernel_init=nn.initializers.normal(self.output_scale),
            bias_init=lambda *_: bias,
        )(hidden)
