"""Variational autoencoder with a closed-form KL term and a changeable ``beta``."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from medzoo.errors import ConfigError
from medzoo.models.base import AutoencoderModel


def gaussian_kl(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) per example, summed over latent dimensions."""
    mean = ops.cast(mean, "float32")
    log_var = ops.cast(log_var, "float32")
    kl = -0.5 * (1.0 + log_var - ops.square(mean) - ops.exp(log_var))
    return ops.sum(ops.reshape(kl, (ops.shape(kl)[0], -1)), axis=1)


@keras.saving.register_keras_serializable(package="medzoo")
class VAE(AutoencoderModel):
    """A VAE: Gaussian posterior, standard normal prior, loss = reconstruction + beta * KL.

    Both terms are *summed* per image (over pixels and over latent dimensions)
    and averaged over the batch, so with ``reconstruction_loss="bce"`` and
    ``beta=1`` the loss is the negative ELBO in nats. ``beta`` lives in a
    non-trainable variable: assign ``model.beta`` during training (see
    :class:`medzoo.callbacks.KLWarmup`) without retracing anything.

    ``train_step`` and ``test_step`` are both defined, so
    ``fit(..., validation_data=...)`` reports ``val_loss``,
    ``val_reconstruction_loss`` and ``val_kl_loss``.

    Args:
        latent_channels: channels of a spatial latent (``H / 2**depth`` maps).
        latent_dim: size of a flat latent instead (default 128 when neither is given).
        beta: initial weight of the KL term.
        reconstruction_loss: ``"bce"`` (default), ``"mse"`` or ``"l1"``.
        **kwargs: architecture options of :class:`~medzoo.models.base.AutoencoderModel`.

    Example:
        >>> vae = VAE(input_shape=(64, 64, 1), filters=8, depth=3, latent_dim=32)
        >>> vae.fit(train_images, validation_data=(val_images,), epochs=2)
        >>> samples = vae.sample(16, seed=0)
    """

    metric_names = ("loss", "reconstruction_loss", "kl_loss")

    def __init__(self, latent_channels=None, latent_dim=None, beta=1.0, reconstruction_loss="bce", **kwargs):
        if latent_channels is None and latent_dim is None:
            latent_dim = 128
        if beta < 0:
            raise ConfigError(f"beta must be >= 0, got {beta}")
        self.latent_channels = latent_channels
        self.latent_dim = latent_dim
        self.initial_beta = float(beta)
        super().__init__(reconstruction_loss=reconstruction_loss, **kwargs)

    def _build_networks(self):
        latent = dict(latent_channels=self.latent_channels, latent_dim=self.latent_dim)
        self.encoder = self._make_encoder(heads=2, **latent)
        self.decoder = self._make_decoder(**latent)
        self.beta = self.add_weight(
            name="beta", shape=(), initializer=keras.initializers.Constant(self.initial_beta),
            trainable=False, dtype="float32",
        )

    @property
    def latent_shape(self) -> tuple[int | None, ...]:
        """Shape of one image's latent; ``(None, None, c)`` for an any-size model."""
        if self.latent_dim is not None:
            return (self.latent_dim,)
        h, w, _ = self.image_shape
        if h is None:
            return (None, None, self.latent_channels)
        return (h // 2**self.depth, w // 2**self.depth, self.latent_channels)

    def get_config(self):
        config = super().get_config()
        config.update(latent_channels=self.latent_channels, latent_dim=self.latent_dim, beta=self.initial_beta)
        return config

    def reparameterize(self, mean, log_var):
        """z = mean + exp(log_var / 2) * eps, eps drawn from the model's seeded generator."""
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator, dtype=mean.dtype)
        return mean + ops.exp(0.5 * log_var) * eps

    def encode_distribution(self, x, training=False):
        """Posterior parameters ``(mean, log_var)`` for a batch of images (tensors).

        ``log_var`` is clipped to [-20, 10]: with a small ``beta`` (KL warm-up) nothing
        else bounds it, and ``exp(log_var)`` would overflow to an infinite KL.
        """
        mean, log_var = self.encoder(self.pad_to_stride(x), training=training)
        return mean, ops.clip(log_var, -20.0, 10.0)

    def encode_tensor(self, x):
        return self.encode_distribution(x)[0]

    def decode_tensor(self, z):
        return self.activate(self.decoder(z, training=False))

    def reconstruct_tensor(self, inputs, training=None):
        mean, log_var = self.encode_distribution(inputs, training=training)
        z = self.reparameterize(mean, log_var) if training else mean
        return self.crop_like(self.activate(self.decoder(z, training=training)), inputs)

    def forward_terms(self, x, training):
        mean, log_var = self.encode_distribution(x, training=training)
        z = self.reparameterize(mean, log_var)
        return {"logits": self.crop_like(self.decoder(z, training=training), x), "mean": mean, "log_var": log_var}

    def losses_from(self, target, terms):
        errors = self.pixel_errors(target, terms["logits"])
        rec = ops.mean(ops.sum(ops.reshape(errors, (ops.shape(errors)[0], -1)), axis=1))
        kl = ops.mean(gaussian_kl(terms["mean"], terms["log_var"]))
        return {"loss": rec + ops.cast(self.beta, "float32") * kl, "reconstruction_loss": rec, "kl_loss": kl}

    def encode(self, x, batch_size=64, preprocess=False, sample=False, tile_size="auto", overlap=None):
        """Images -> posterior means (or, with ``sample=True``, one posterior sample each).

        Tiling (``tile_size``, ``overlap``) as in :meth:`AutoencoderModel.encode`; tiles
        blend the posterior's mean and log-variance, then sample.
        """
        x = self._check_images(x, preprocess)
        if not sample:
            return self._encode_checked(x, batch_size, tile_size, overlap)
        params = self._posterior_params(x, batch_size, tile_size, overlap)

        def fn(t):
            return self.reparameterize(*ops.split(t, 2, axis=-1))

        return self._batched("reparameterize", fn, params, batch_size)

    def posterior(self, x, batch_size=64, preprocess=False, tile_size="auto", overlap=None):
        """Images -> ``(mean, log_var)`` of q(z|x) (numpy), compiled once per model; tiling as in :meth:`encode`."""
        params = self._posterior_params(self._check_images(x, preprocess), batch_size, tile_size, overlap)
        return tuple(np.split(params.astype(np.float32), 2, axis=-1))

    def _posterior_params(self, x, batch_size, tile_size, overlap):
        """q(z|x)'s mean and log-variance, concatenated on the channel axis (what tiles blend)."""
        tiles = self._tiles(x.shape[1], x.shape[2], tile_size, overlap)
        return self._maybe_tiled("encode_distribution",
                                 lambda t: ops.concatenate(self.encode_distribution(t), axis=-1),
                                 x, batch_size, tiles, 1 / self.downsample_factor)

    def sample(self, n, seed=None, size=None):
        """Draw ``n`` images from the prior: decode z ~ N(0, I). ``seed`` makes it repeatable.

        ``size=(H, W)``: the image size, required for an any-size model (the latent is then
        ``ceil(H/f) x ceil(W/f)``); fixed-size models make images of their input size.
        """
        seed = self.seed_generator if seed is None else seed
        shape = self.latent_shape
        if shape[0] is None:
            if size is None:
                raise ConfigError("an any-size VAE needs sample(n, size=(H, W)): the size of the images to draw")
            shape = (*self.latent_size(*size), self.latent_channels)
        z = keras.random.normal((int(n), *shape), seed=seed)
        return self.decode(np.asarray(z), output_size=None if size is None else tuple(size))
