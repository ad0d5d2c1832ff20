"""Convolutional autoencoder: plain, denoising and sparse, as options of one class."""

from __future__ import annotations

import keras
from keras import ops

from medzoo.errors import ConfigError
from medzoo.models.base import AutoencoderModel

NOISE_MODELS = ("none", "gaussian", "poisson")


@keras.saving.register_keras_serializable(package="medzoo")
class ConvAutoencoder(AutoencoderModel):
    """A deterministic convolutional autoencoder.

    The code is spatial (``latent_channels`` maps at ``H / 2**depth``) or flat
    (``latent_dim``, fixed-size ``architecture="conv"`` only). Two options turn it into the classic variants:

    * denoising: ``noise="gaussian"`` (additive, std ``noise_strength``) or
      ``noise="poisson"`` (signal-dependent shot noise, variance
      ``noise_strength * x``, i.e. a photon count of ``1 / noise_strength`` at
      white). The target stays the clean image. Noise corrupts the input of the
      loss passes only: fresh noise in training, and in evaluation (``evaluate``,
      the validation pass) noise drawn from the model's seed, the same every
      epoch, so ``val_loss`` measures denoising and picks the best denoiser.
      ``predict`` and ``reconstruct`` never add noise.
    * sparse: ``sparsity > 0`` adds ``sparsity * mean(|code|)`` to the loss.

    Args:
        latent_channels: channels of a spatial code (default 16 when
            ``latent_dim`` is not given).
        latent_dim: size of a flat code (a Dense bottleneck) instead.
        noise: ``"none"``, ``"gaussian"`` or ``"poisson"``.
        noise_strength: gaussian std, or the inverse photon count for poisson.
        sparsity: weight of the L1 activity penalty on the code.
        **kwargs: architecture options of :class:`~medzoo.models.base.AutoencoderModel`.

    Example:
        >>> model = ConvAutoencoder(input_shape=(64, 64, 1), filters=8, depth=3)
        >>> history = model.fit(images, epochs=2)  # images: float32 in [0, 1]
        >>> codes = model.encode(images)
    """

    def __init__(self, latent_channels=None, latent_dim=None, noise="none", noise_strength=0.1,
                 sparsity=0.0, **kwargs):
        if latent_channels is None and latent_dim is None:
            latent_channels = 16
        if noise not in NOISE_MODELS:
            raise ConfigError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
        if noise_strength < 0 or sparsity < 0:
            raise ConfigError("noise_strength and sparsity must be >= 0")
        self.latent_channels = latent_channels
        self.latent_dim = latent_dim
        self.noise = noise
        self.noise_strength = float(noise_strength)
        self.sparsity = float(sparsity)
        if sparsity > 0:
            self.metric_names = ("loss", "reconstruction_loss", "sparsity_loss")
        super().__init__(**kwargs)

    def _build_networks(self):
        latent = dict(latent_channels=self.latent_channels, latent_dim=self.latent_dim)
        self.encoder = self._make_encoder(**latent)
        self.decoder = self._make_decoder(**latent)

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_channels=self.latent_channels,
            latent_dim=self.latent_dim,
            noise=self.noise,
            noise_strength=self.noise_strength,
            sparsity=self.sparsity,
        )
        return config

    def add_noise(self, x, strength=None, seed=None):
        """Corrupt ``x`` with the model's noise model (``strength`` overrides the config).

        Used inside training and available on its own, e.g. to make noisy test
        images with exactly the training noise. ``seed`` (an int) makes it
        reproducible; by default the model's seed generator advances.
        """
        strength = self.noise_strength if strength is None else float(strength)
        x = ops.cast(x, "float32")
        seed = self.seed_generator if seed is None else seed
        if self.noise == "none" or strength == 0:
            return x
        eps = keras.random.normal(ops.shape(x), seed=seed)
        if self.noise == "gaussian":
            noisy = x + strength * eps
        else:
            noisy = x + ops.sqrt(ops.maximum(x, 0.0) * strength) * eps
        if self.output_activation == "sigmoid":
            noisy = ops.clip(noisy, 0.0, 1.0)
        return noisy

    def encode_tensor(self, x):
        return self.encoder(self.pad_to_stride(x), training=False)

    def decode_tensor(self, z):
        return self.activate(self.decoder(z, training=False))

    def forward_terms(self, x, training):
        inputs = self.add_noise(x, seed=None if training else (self.seed or 0))
        code = self.encoder(self.pad_to_stride(inputs), training=training)
        return {"logits": self.crop_like(self.decoder(code, training=training), x), "code": code}

    def losses_from(self, target, terms):
        rec = ops.mean(self.pixel_errors(target, terms["logits"]))
        values = {"reconstruction_loss": rec}
        loss = rec
        if self.sparsity > 0:
            sparse = ops.mean(ops.abs(ops.cast(terms["code"], "float32")))
            values["sparsity_loss"] = sparse
            loss = loss + self.sparsity * sparse
        values["loss"] = loss
        return values
