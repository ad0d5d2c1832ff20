"""VQ-VAE: a convolutional autoencoder with a discrete, learned codebook bottleneck."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from medzoo.models.base import AutoencoderModel
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
        self.encoder = self._make_encoder(latent_channels=self.embedding_dim)
        self.decoder = self._make_decoder(latent_channels=self.embedding_dim)
        self.quantizer = VectorQuantizer(
            self.num_embeddings, self.embedding_dim, commitment_cost=self.commitment_cost, ema=self.ema,
            decay=self.decay, dead_code_threshold=self.dead_code_threshold, seed=self.seed, name="quantizer",
        )
        self.quantizer.build((None, *self.code_shape, self.embedding_dim))

    @property
    def code_shape(self) -> tuple[int | None, int | None]:
        """Shape of one image's code map (``(None, None)`` for an any-size model)."""
        h, w, _ = self.image_shape
        if h is None:
            return (None, None)
        return (h // 2**self.depth, w // 2**self.depth)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
            commitment_cost=self.commitment_cost, ema=self.ema, decay=self.decay,
            dead_code_threshold=self.dead_code_threshold,
        )
        return config

    def encode_continuous(self, x, batch_size=64, preprocess=False, tile_size="auto", overlap=None):
        """Images -> the encoder's pre-quantisation features (numpy), e.g. for linear probes."""
        x = self._check_images(x, preprocess)
        tiles = self._tiles(x.shape[1], x.shape[2], tile_size, overlap)
        return self._maybe_tiled("encode_continuous", lambda t: self.encoder(self.pad_to_stride(t), training=False),
                                 x, batch_size, tiles, 1 / self.downsample_factor)

    def encode(self, x, batch_size=64, preprocess=False, tile_size="auto", overlap=None):
        """Images -> integer code maps (N, h, w); tiles blend the continuous features, then quantise."""
        x = self._check_images(x, preprocess)
        if self._tiles(x.shape[1], x.shape[2], tile_size, overlap) is None:
            return self._batched("encode", self.encode_tensor, x, batch_size)
        features = self.encode_continuous(x, batch_size, tile_size=tile_size, overlap=overlap)
        return self._batched("quantize", self.quantizer.nearest_codes, features, batch_size)

    def encode_tensor(self, x):
        return self.quantizer.nearest_codes(self.encoder(self.pad_to_stride(x), training=False))

    def decode_tensor(self, z):
        if keras.backend.standardize_dtype(z.dtype).startswith(("int", "uint")):
            z = self.quantizer.lookup(z)
        return self.activate(self.decoder(z, training=False))

    def reconstruct_tensor(self, inputs, training=None):
        out = self.quantizer(self.encoder(self.pad_to_stride(inputs), training=training), training=training)
        return self.crop_like(self.activate(self.decoder(out["quantized"], training=training)), inputs)

    def forward_terms(self, x, training):
        out = self.quantizer(self.encoder(self.pad_to_stride(x), training=training), training=training)
        logits = self.crop_like(self.decoder(out["quantized"], training=training), x)
        return {"logits": logits, "vq_loss": out["loss"], "perplexity": out["perplexity"],
                "codebook_usage": out["codebook_usage"]}

    def losses_from(self, target, terms):
        rec = ops.mean(self.pixel_errors(target, terms["logits"]))
        return {
            "loss": rec + terms["vq_loss"],
            "reconstruction_loss": rec,
            "vq_loss": terms["vq_loss"],
            "perplexity": terms["perplexity"],
            "codebook_usage": terms["codebook_usage"],
        }

    def decode(self, z, batch_size=64, tile_size="auto", overlap=None, output_size=None):
        """Integer code maps (or float latents) -> images; tiling and ``output_size`` as in the base class."""
        z = np.asarray(z)
        if np.issubdtype(z.dtype, np.integer):
            z = self._batched("lookup", self.quantizer.lookup, z, batch_size)
        return super().decode(z, batch_size, tile_size=tile_size, overlap=overlap, output_size=output_size)

    def sample(self, n, seed=None):
        raise NotImplementedError(
            "VQVAE.sample needs a prior over code maps (an autoregressive model such as a PixelCNN "
            "or a transformer trained on VQVAE.encode() outputs); medzoo does not ship one yet. "
            "Use encode/decode for compression and features, or medzoo's VAE for sampling."
        )
