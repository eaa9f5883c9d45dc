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

import nagmom


class Autoencoder(nn.Module):
    """Encoder ``input -> encoder_sizes[0] -> ... -> encoder_sizes[-1]`` (the code), mirrored."""

    encoder_sizes: Sequence[int]
    output_size: int
    init_scale: float = 1.0
    num_connections: int = 15

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_init = nagmom.initializers.sparse(self.num_connections, stddev=self.init_scale)
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
# A small network for tests.
TinyAutoencoder = functools.partial(Autoencoder, encoder_sizes=(32, 16, 4), output_size=784)

AUTOENCODERS = {
    "curves": CurvesAutoencoder,
    "mnist": MnistAutoencoder,
    "tiny": TinyAutoencoder,
}
