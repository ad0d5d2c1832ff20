"""VQ-VAE: a convolutional autoencoder with a discrete, learned codebook bottleneck."""

from __future__ import annotations

import numpy as np
import keras
import tensorflow as tf

from medzoo.models.base import AutoencoderModel
from medzoo.models.blocks import build_decoder, build_encoder
from medzoo.models.quantizer import VectorQuantizer


@keras.saving.register_keras_serializable(package="medzoo")
class VQVAE(AutoencoderModel):
    """Encoder -> :class:`VectorQuantizer` -> decoder (van den Oord et al., 2017).

    An image becomes an integer code map of shape ``(H / 2**depth, W / 2**depth)``
    with values in ``[0, num_embeddings)``: ``encode`` returns it, ``decode``
    takes it back to an image (``decode`` also accepts float latents of shape
    ``(..., embedding_dim)``). With ``K = num_embeddings`` the code map costs at most
    ``log2(K)`` bits per position before entropy coding.

    Tracked metrics: ``loss``, ``reconstruction_loss``, ``vq_loss``,
    ``perplexity`` (effective number of codes used per batch) and
    ``codebook_usage`` (fraction of the codebook used per batch).

    Args:
        num_embeddings: codebook size.
        embedding_dim: dimension of each code vector (the latent channels).
        commitment_cost: weight of the commitment loss.
        ema: EMA codebook updates (default) or a codebook learned by gradient.
        decay: EMA decay.
        dead_code_threshold: EMA usage below which a code is restarted.
        **kwargs: architecture options of :class:`~medzoo.models.base.AutoencoderModel`.
    """

    metric_names = ("loss", "reconstruction_loss", "vq_loss", "perplexity", "codebook_usage")

    def __init__(self, num_embeddings=512, embedding_dim=64, commitment_cost=0.25, ema=True, decay=0.99,
                 dead_code_threshold=1.0, **kwargs):
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.commitment_cost = float(commitment_cost)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.dead_code_threshold = float(dead_code_threshold)
        super().__init__(**kwargs)

    def _build_networks(self):
        arch = self._architecture_kwargs()
        self.encoder = build_encoder(self.image_shape, **arch, latent_channels=self.embedding_dim)
        self.decoder = build_decoder(self.image_shape, **arch, latent_channels=self.embedding_dim)
        self.quantizer = VectorQuantizer(
            self.num_embeddings, self.embedding_dim, commitment_cost=self.commitment_cost, ema=self.ema,
            decay=self.decay, dead_code_threshold=self.dead_code_threshold, seed=self.seed, name="quantizer",
        )
        self.quantizer.build((None, *self.code_shape, self.embedding_dim))

    @property
    def code_shape(self) -> tuple[int, int]:
        """Shape of one image's code map."""
        h, w, _ = self.image_shape
        return (h // 2**self.depth, w // 2**self.depth)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
            commitment_cost=self.commitment_cost, ema=self.ema, decay=self.decay,
            dead_code_threshold=self.dead_code_threshold,
        )
        return config

    def encode_continuous(self, x, batch_size=64, preprocess=False):
        """Images -> the encoder's pre-quantisation features (numpy), e.g. for linear probes."""
        return self._batched("encode_continuous", lambda t: self.encoder(t, training=False),
                             self._check_images(x, preprocess), batch_size)

    def encode_tensor(self, x):
        return self.quantizer.nearest_codes(self.encoder(x, training=False))

    def decode_tensor(self, z):
        if z.dtype.is_integer:
            z = self.quantizer.lookup(z)
        return self.activate(self.decoder(z, training=False))

    def call(self, inputs, training=None):
        out = self.quantizer(self.encoder(inputs, training=training), training=training)
        return self.activate(self.decoder(out["quantized"], training=training))

    def compute_losses(self, x, target, training):
        out = self.quantizer(self.encoder(x, training=training), training=training)
        logits = self.decoder(out["quantized"], training=training)
        rec = tf.reduce_mean(self.pixel_errors(target, logits))
        return {
            "loss": rec + out["loss"],
            "reconstruction_loss": rec,
            "vq_loss": out["loss"],
            "perplexity": out["perplexity"],
            "codebook_usage": out["codebook_usage"],
        }

    def decode(self, z, batch_size=64):
        z = np.asarray(z)
        return self._batched("decode_codes" if np.issubdtype(z.dtype, np.integer) else "decode", self.decode_tensor,
                             z, batch_size)

    def sample(self, n, seed=None):
        raise NotImplementedError(
            "VQVAE.sample needs a prior over code maps (an autoregressive model such as a PixelCNN "
            "or a transformer trained on VQVAE.encode() outputs); medzoo does not ship one yet. "
            "Use encode/decode for compression and features, or medzoo's VAE for sampling."
        )
