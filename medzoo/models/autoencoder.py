"""Convolutional autoencoder: plain, denoising, sparse and rate-trained, as options of one class."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from medzoo.errors import ConfigError
from medzoo.models.base import AutoencoderModel
from medzoo.models.entropy_models import EntropyBottleneck

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
    * rate-trained (a codec, :mod:`medzoo.codec.latent`): ``rate_steps`` lists the
      quantisation steps of its quality levels. Each training image draws one; the decoder
      sees the latent rounded on it (straight-through), and a learned factorized density
      (:class:`~medzoo.models.entropy_models.EntropyBottleneck`, bins as wide as the step)
      prices the latent plus uniform noise of that width in bits per pixel, ``bpp``. The loss
      adds ``rate_weight * (step / s)^2 * bpp``, ``s`` the steps' geometric mean: at high
      rates a step ``s`` is the best one for a trade-off proportional to ``s^2``, so every
      level is trained at the trade-off it serves, in one network.

    Args:
        latent_channels: channels of a spatial code (default 16 when
            ``latent_dim`` is not given).
        latent_dim: size of a flat code (a Dense bottleneck) instead.
        noise: ``"none"``, ``"gaussian"`` or ``"poisson"``.
        noise_strength: gaussian std, or the inverse photon count for poisson.
        sparsity: weight of the L1 activity penalty on the code.
        rate_steps: quantisation steps of the latent the rate is trained at (spatial latents); its codec levels
            are built from them (:attr:`codec_levels`).
        rate_weight: weight of the rate at the steps' geometric mean (MSE in [0, 1] per bit per pixel).
        **kwargs: architecture options of :class:`~medzoo.models.base.AutoencoderModel`.

    Example:
        >>> model = ConvAutoencoder(input_shape=(64, 64, 1), filters=8, depth=3)
        >>> history = model.fit(images, epochs=2)  # images: float32 in [0, 1]
        >>> codes = model.encode(images)
    """

    def __init__(self, latent_channels=None, latent_dim=None, noise="none", noise_strength=0.1,
                 sparsity=0.0, rate_steps=None, rate_weight=0.0, **kwargs):
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
        self.rate_steps = _check_rate(rate_steps, rate_weight, latent_dim)
        self.rate_weight = float(rate_weight)
        self.metric_names = ("loss", "reconstruction_loss") + (("sparsity_loss",) if sparsity > 0 else ()) + \
            (("bpp",) if self.rate_steps else ())
        super().__init__(**kwargs)

    def _build_networks(self):
        latent = dict(latent_channels=self.latent_channels, latent_dim=self.latent_dim)
        self.encoder = self._make_encoder(**latent)
        self.decoder = self._make_decoder(**latent)
        if self.rate_steps:
            self.latent_density = EntropyBottleneck(name="latent_density")
            self.latent_density.build((None, None, None, self.latent_channels))

    @property
    def codec_levels(self):
        """A rate-trained model's quality levels for :mod:`medzoo.codec.latent`, fewest bits first: the image
        halved per side at each trained step but the finest, then at full size at each but the coarsest
        (``((2, step), ..., (1, step), ...)``); None for the others (they code with the default levels).

        The halved image reaches the rates below the full-size coarsest step, and there beats that step:
        ``codec-chestxray`` stage 3 on the 1024 px Hannover test radiographs gave 36.09 dB at 0.199 bpp halved
        (step 0.177) against 36.08 dB at 0.246 bpp full size (step 1), and 0.07-0.23 bpp halved, 0.5-1.5 dB
        above JPEG 2000 there (``benchmarks/codec_comparison.py``, stages/README.md)."""
        if not self.rate_steps:
            return None
        steps = sorted(self.rate_steps, reverse=True)
        return tuple((2, s) for s in steps[:-1] or steps) + tuple((1, s) for s in steps[1:] or steps)

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_channels=self.latent_channels,
            latent_dim=self.latent_dim,
            noise=self.noise,
            noise_strength=self.noise_strength,
            sparsity=self.sparsity,
        )
        if self.rate_steps:
            config.update(rate_steps=list(self.rate_steps), rate_weight=self.rate_weight)
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
        terms = {"code": code}
        if self.rate_steps:
            code = ops.cast(code, "float32")
            step = self._steps_for(ops.shape(x)[0], training)
            noise = keras.random.uniform(ops.shape(code), -0.5, 0.5,
                                         seed=self.seed_generator if training else (self.seed or 0) + 1)
            terms["likelihood"] = self.latent_density.likelihood(code + step * noise, step)
            terms["step"] = step
            code = code + ops.stop_gradient(ops.round(code / step) * step - code)  # what decoding will see
        terms["logits"] = self.crop_like(self.decoder(code, training=training), x)
        return terms

    def fit_latent_density(self, images, epochs: int = 20, learning_rate: float = 1e-2, batch_size: int = 16,
                           seed: int = 0) -> tuple[float, float]:
        """Fit the rate model alone to the latents of ``images`` (N, H, W, C) in [0, 1]; encoder and decoder stay.

        A density that starts far from a trained latent (a zoo autoencoder widened for rate)
        prices it at several bits per value too many, and at a fine-tuning learning rate it
        would take thousands of steps to follow, its rate gradient pushing the encoder all the
        while. A few epochs on the latents first (a fresh noise draw and step per image each
        epoch) start the fine-tune at an honest rate. Returns the estimated bits per pixel
        before and after, each image at a step of its own.
        """
        if not self.rate_steps:
            raise ConfigError("fit_latent_density needs a rate-trained model (rate_steps)")
        images = np.asarray(images, np.float32)
        latents = np.asarray(self.encode(images, batch_size=batch_size), np.float32)
        pixels = float(images.shape[1] * images.shape[2])
        bits = _LatentBits(self.latent_density)
        bits.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=lambda _, b: ops.mean(b) / pixels)
        rng = np.random.default_rng(seed)

        def draw():
            steps = np.asarray(self.rate_steps, np.float32)[rng.integers(0, len(self.rate_steps), len(latents))]
            steps = steps[:, None, None, None]
            return latents + steps * rng.uniform(-0.5, 0.5, latents.shape).astype(np.float32), steps

        def rate(noisy, steps):
            return float(np.mean(keras.ops.convert_to_numpy(bits.predict((noisy, steps), batch_size=batch_size,
                                                                         verbose=0)))) / pixels

        before = rate(*draw())
        zeros = np.zeros(len(latents), np.float32)
        for _ in range(int(epochs)):
            bits.fit(draw(), zeros, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        return before, rate(*draw())

    def _steps_for(self, batch, training):
        """Each image's quantisation step, (B, 1, 1, 1): drawn in training, the levels in turn in evaluation."""
        steps = ops.convert_to_tensor(np.asarray(self.rate_steps, np.float32))
        if training:
            index = keras.random.randint((batch,), 0, len(self.rate_steps), seed=self.seed_generator)
        else:
            index = ops.arange(batch) % len(self.rate_steps)
        return ops.reshape(ops.take(steps, index, axis=0), (-1, 1, 1, 1))

    def losses_from(self, target, terms):
        rec = ops.mean(self.pixel_errors(target, terms["logits"]))
        values = {"reconstruction_loss": rec}
        loss = rec
        if self.sparsity > 0:
            sparse = ops.mean(ops.abs(ops.cast(terms["code"], "float32")))
            values["sparsity_loss"] = sparse
            loss = loss + self.sparsity * sparse
        if self.rate_steps:
            shape = ops.shape(target)
            pixels = ops.cast(shape[1] * shape[2], "float32")
            bpp = -ops.sum(ops.log(terms["likelihood"]), axis=(1, 2, 3)) / (math.log(2.0) * pixels)
            reference = float(np.exp(np.mean(np.log(self.rate_steps))))
            weight = ops.square(ops.reshape(terms["step"], (-1,)) / reference)
            values["bpp"] = ops.mean(bpp)
            loss = loss + self.rate_weight * ops.mean(weight * bpp)
        values["loss"] = loss
        return values


class _LatentBits(keras.Model):
    """Bits of noisy latents under a density, per image: what :meth:`ConvAutoencoder.fit_latent_density` fits."""

    def __init__(self, density, **kwargs):
        super().__init__(name="latent_bits", **kwargs)  # TensorFlow refuses a scope named after "_LatentBits"
        self.density = density

    def call(self, inputs):
        latents, steps = inputs
        return -ops.sum(ops.log(self.density.likelihood(latents, steps)), axis=(1, 2, 3)) / math.log(2.0)


def _check_rate(steps, weight, latent_dim):
    """``rate_steps`` as a tuple of floats (None when not rate-trained), after checking the rate settings."""
    if steps is None:
        if weight:
            raise ConfigError("rate_weight needs rate_steps, the quantisation steps it trains for")
        return None
    steps = tuple(float(s) for s in steps)
    if not steps or any(not (math.isfinite(s) and s > 0) for s in steps) or len(set(steps)) != len(steps):
        raise ConfigError(f"rate_steps must be distinct positive numbers, got {steps!r}")
    if latent_dim is not None:
        raise ConfigError("rate training codes a spatial latent (latent_channels), not a flat one (latent_dim)")
    if not (math.isfinite(weight) and weight > 0):
        raise ConfigError(f"rate_weight must be positive when rate_steps are given, got {weight!r}")
    return steps
