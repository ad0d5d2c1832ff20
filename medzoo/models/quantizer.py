"""The vector-quantisation layer of the VQ-VAE, with its codebook inside Keras' weight tracking."""

from __future__ import annotations

import keras
from keras import ops

from medzoo.errors import ConfigError


@keras.saving.register_keras_serializable(package="medzoo")
class VectorQuantizer(keras.layers.Layer):
    """Map each input vector to its nearest codebook entry (van den Oord et al., 2017).

    The codebook is a weight created with ``add_weight``, so it is saved, loaded
    and distributed like any other. Gradients pass straight through the
    quantisation; the encoder is pulled towards its codes by a commitment loss
    ``commitment_cost * ||z - sg(e)||^2``.

    Two ways to learn the codebook:

    * ``ema=True`` (default): exponential moving averages of the assigned vectors
      (``decay``), with Laplace smoothing; codes whose average usage falls below
      ``dead_code_threshold`` assignments per batch are restarted on random
      encoder outputs of the current batch, so the codebook stays in use.
    * ``ema=False``: the codebook is trainable and gets the loss ``||sg(z) - e||^2``.

    ``call`` returns a dict: ``quantized`` (straight-through), ``codes`` (int32
    indices, input shape without the last axis), ``loss`` (the layer's loss
    term), ``perplexity`` and ``codebook_usage`` (fraction of codes used in the batch).

    Args:
        num_embeddings: codebook size K.
        embedding_dim: vector size D (the last axis of the input).
        commitment_cost: weight of the commitment loss.
        ema: learn the codebook by moving averages instead of gradients.
        decay: EMA decay.
        epsilon: Laplace smoothing of the EMA cluster sizes.
        dead_code_threshold: EMA usage below which a code is restarted (0 disables).
        seed: seed for the code restarts.
    """

    def __init__(self, num_embeddings, embedding_dim, commitment_cost=0.25, ema=True, decay=0.99,
                 epsilon=1e-5, dead_code_threshold=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if num_embeddings < 2 or embedding_dim < 1:
            raise ConfigError("need num_embeddings >= 2 and embedding_dim >= 1")
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"decay must be in (0, 1), got {decay}")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.commitment_cost = float(commitment_cost)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        self.dead_code_threshold = float(dead_code_threshold)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="restart_seed")

    def build(self, input_shape=None):
        k, d = self.num_embeddings, self.embedding_dim
        self.codebook = self.add_weight(
            name="codebook", shape=(k, d),
            initializer=keras.initializers.RandomUniform(-1.0 / k, 1.0 / k, seed=self.seed),
            trainable=not self.ema,
        )
        if self.ema:
            # "mean" aggregation lets each replica assign its statistics under tf.distribute;
            # under JAX the trainer's stateless call carries the assignments like BatchNorm's
            self.ema_cluster_size = self.add_weight(
                name="ema_cluster_size", shape=(k,), initializer="zeros", trainable=False, aggregation="mean")
            self.ema_embedding_sum = self.add_weight(
                name="ema_embedding_sum", shape=(k, d), initializer="zeros", trainable=False, aggregation="mean")
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
            commitment_cost=self.commitment_cost, ema=self.ema, decay=self.decay,
            epsilon=self.epsilon, dead_code_threshold=self.dead_code_threshold, seed=self.seed,
        )
        return config

    def nearest_codes(self, z):
        """Indices of the nearest codebook vectors, shape ``z.shape[:-1]`` (int32)."""
        flat = ops.reshape(ops.cast(z, "float32"), (-1, self.embedding_dim))
        codebook = ops.cast(self.codebook, "float32")
        distances = (
            ops.sum(ops.square(flat), axis=1, keepdims=True)
            - 2.0 * ops.matmul(flat, ops.transpose(codebook))
            + ops.sum(ops.square(codebook), axis=1)[None, :]
        )
        codes = ops.cast(ops.argmin(distances, axis=1), "int32")
        return ops.reshape(codes, ops.shape(z)[:-1])

    def lookup(self, codes):
        """Codebook vectors for integer ``codes`` (any shape) -> shape ``codes.shape + (D,)``."""
        return ops.take(ops.cast(self.codebook, "float32"), ops.cast(codes, "int32"), axis=0)

    def _ema_update(self, flat, one_hot):
        """Move the codebook towards the mean of its assigned vectors (no gradient flows through this)."""
        flat, one_hot = ops.stop_gradient(flat), ops.stop_gradient(one_hot)
        decay = self.decay
        counts = ops.sum(one_hot, axis=0)
        sums = ops.matmul(ops.transpose(one_hot), flat)
        cluster = decay * self.ema_cluster_size + (1.0 - decay) * counts
        embed_sum = decay * self.ema_embedding_sum + (1.0 - decay) * sums
        if self.dead_code_threshold > 0:
            dead = cluster < self.dead_code_threshold
            picks = keras.random.randint((self.num_embeddings,), 0, ops.shape(flat)[0], seed=self.seed_generator)
            fresh = ops.take(flat, picks, axis=0)
            cluster = ops.where(dead, ops.ones_like(cluster), cluster)
            embed_sum = ops.where(dead[:, None], fresh, embed_sum)
        total = ops.sum(cluster)
        smoothed = (cluster + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
        self.ema_cluster_size.assign(cluster)
        self.ema_embedding_sum.assign(embed_sum)
        self.codebook.assign(embed_sum / smoothed[:, None])

    def call(self, inputs, training=False):
        z = ops.cast(inputs, "float32")
        codes = self.nearest_codes(z)
        quantized = self.lookup(codes)
        flat = ops.reshape(z, (-1, self.embedding_dim))
        one_hot = ops.one_hot(ops.reshape(codes, (-1,)), self.num_embeddings, dtype="float32")

        commitment = ops.mean(ops.square(z - ops.stop_gradient(quantized)))
        loss = self.commitment_cost * commitment
        if not self.ema:
            loss = loss + ops.mean(ops.square(ops.stop_gradient(z) - quantized))
        elif training:
            self._ema_update(flat, one_hot)

        probs = ops.mean(one_hot, axis=0)
        perplexity = ops.exp(-ops.sum(probs * ops.log(probs + 1e-10)))
        usage = ops.mean(ops.cast(probs > 0, "float32"))
        straight_through = z + ops.stop_gradient(quantized - z)
        return {
            "quantized": ops.cast(straight_through, inputs.dtype),
            "codes": codes,
            "loss": loss,
            "perplexity": perplexity,
            "codebook_usage": usage,
        }

    def compute_output_spec(self, inputs, training=False):
        shape = inputs.shape
        return {
            "quantized": keras.KerasTensor(shape, dtype=inputs.dtype),
            "codes": keras.KerasTensor(shape[:-1], dtype="int32"),
            "loss": keras.KerasTensor((), dtype="float32"),
            "perplexity": keras.KerasTensor((), dtype="float32"),
            "codebook_usage": keras.KerasTensor((), dtype="float32"),
        }
