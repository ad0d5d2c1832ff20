"""A rate-distortion-trained VAE codec: the scale hyperprior of Balle et al. (2018), several rates in one model.

Networks (grey or RGB images, any size; padded to a multiple of 64)::

    analysis   g_a: [Conv 5x5 /2 -> GDN] x 3 -> Conv 5x5 /2 to M        y at H/16
    synthesis  g_s: [Deconv 5x5 x2 -> IGDN] x 3 -> Deconv 5x5 x2       x_hat
    hyper-analysis  h_a: Conv 3x3 -> ReLU -> Conv 5x5 /2 -> ReLU -> Conv 5x5 /2 to N    z at H/64
    hyper-synthesis h_s: Deconv 5x5 x2 -> ReLU -> Deconv 5x5 x2 -> ReLU -> Conv 3x3 to M, softplus:
                         the scale of every element of y

Rate: ``y`` is coded with a zero-mean Gaussian of the predicted scale, ``z`` with a learned
factorized density (:class:`~medzoo.models.entropy_models.EntropyBottleneck`). Training
minimises ``bits per pixel + lambda * 255^2 * MSE`` with additive uniform noise standing
in for rounding in the rate terms, and rounding with a straight-through gradient in front
of the synthesis (the decoder sees what it will see at coding time).

Rates: ``lambdas`` lists one trade-off per quality level. Each level has a gain vector
that scales ``y`` before rounding and an inverse gain after it (the "asymmetric gain
units" of Cui et al., 2021), so one network serves every level; training draws a level
per image. Quality 0 is the lowest rate.

Coding (entropy tables, bitstreams, the integer hyper-synthesis that makes decoding
bit-exact across machines) lives in :mod:`medzoo.codec`; this module is the network.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from medzoo.errors import ConfigError
from medzoo.models.base import AutoencoderModel
from medzoo.models.entropy_models import GDN, EntropyBottleneck, gaussian_likelihood

#: the trade-offs of the default quality levels (distortion weight on 255^2 * MSE), lowest rate first
DEFAULT_LAMBDAS = (0.0018, 0.0038, 0.0082, 0.0175, 0.0375, 0.08, 0.17, 0.36)
#: the analysis transform downsamples by 16, the hyper-analysis by 4 more
LATENT_FACTOR, HYPER_FACTOR = 16, 64


def _conv(filters, kernel, stride, name, activation=None):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", activation=activation, name=name)


def _deconv(filters, kernel, stride, name, activation=None):
    return keras.layers.Conv2DTranspose(filters, kernel, strides=stride, padding="same", activation=activation,
                                        name=name)


def build_analysis(channels, n, m, name="analysis") -> keras.Model:
    inputs = keras.Input((None, None, channels), name="image")
    x = inputs
    for i in range(3):
        x = GDN(name=f"gdn{i}")(_conv(n, 5, 2, f"conv{i}")(x))
    return keras.Model(inputs, _conv(m, 5, 2, "conv3")(x), name=name)


def build_synthesis(channels, n, m, name="synthesis") -> keras.Model:
    inputs = keras.Input((None, None, m), name="latent")
    x = inputs
    for i in range(3):
        x = GDN(inverse=True, name=f"igdn{i}")(_deconv(n, 5, 2, f"deconv{i}")(x))
    return keras.Model(inputs, _deconv(channels, 5, 2, "deconv3")(x), name=name)


def build_hyper_analysis(n, m, name="hyper_analysis") -> keras.Model:
    inputs = keras.Input((None, None, m), name="latent")
    x = _conv(n, 3, 1, "conv0", "relu")(inputs)
    x = _conv(n, 5, 2, "conv1", "relu")(x)
    return keras.Model(inputs, _conv(n, 5, 2, "conv2")(x), name=name)


def build_hyper_synthesis(n, m, name="hyper_synthesis") -> keras.Model:
    """z -> the (pre-softplus) scale logits of y; only ReLU and convolutions, so it runs in integers too."""
    inputs = keras.Input((None, None, n), name="hyper_latent")
    x = _deconv(n, 5, 2, "deconv0", "relu")(inputs)
    x = _deconv(n, 5, 2, "deconv1", "relu")(x)
    return keras.Model(inputs, _conv(m, 3, 1, "conv2")(x), name=name)


@keras.saving.register_keras_serializable(package="medzoo")
class HyperpriorCodec(AutoencoderModel):
    """A scale-hyperprior image codec with ``len(lambdas)`` quality levels in one network.

    Args:
        input_shape: ``(None, None, C)``; any size (padded to a multiple of 64), C 1 or 3.
        n: channels of the transforms and of the hyper-latent ``z``.
        m: channels of the latent ``y``.
        lambdas: rate-distortion trade-off per quality level, increasing (higher = more bits).
        quality: the level ``reconstruct`` / ``encode`` use (default: the middle one).
        seed: seed of the training noise and of the quality drawn per image.

    ``fit`` reports ``loss``, ``bpp`` (estimated bits per pixel, the rate term) and
    ``distortion`` (MSE in the [0, 1] range), averaged over the levels drawn.

    Example:
        >>> codec = HyperpriorCodec(n=64, m=96)
        >>> codec.fit(crops, epochs=10)
        >>> codec.rate_distortion(test_images)   # estimated bpp and PSNR per quality level
    """

    metric_names = ("loss", "bpp", "distortion")

    def __init__(self, input_shape=(None, None, 1), n=128, m=160, lambdas=DEFAULT_LAMBDAS, quality=None,
                 seed=None, **kwargs):
        for key in ("filters", "depth", "normalization", "activation", "output_activation", "reconstruction_loss",
                    "architecture", "blocks_per_level", "attention", "ssim_weight"):
            kwargs.pop(key, None)  # the base class's architecture options do not apply
        self.n, self.m = int(n), int(m)
        self.lambdas = tuple(float(v) for v in lambdas)
        if not self.lambdas or any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:])) or self.lambdas[0] <= 0:
            raise ConfigError(f"lambdas must be positive and increasing, got {lambdas!r}")
        self.quality = len(self.lambdas) // 2 if quality is None else int(quality)
        if not 0 <= self.quality < len(self.lambdas):
            raise ConfigError(f"quality must be in 0..{len(self.lambdas) - 1}, got {quality!r}")
        super().__init__(input_shape=input_shape, filters=[self.n] * 4, depth=4, architecture="residual",
                         normalization="none", output_activation="linear", reconstruction_loss="mse", seed=seed,
                         **kwargs)

    @property
    def downsample_factor(self) -> int:
        """Images are padded to a multiple of 64 (y is 16 times smaller per side, z 64)."""
        return HYPER_FACTOR

    #: the latent's spatial size, in words (for model cards)
    latent_rule = "4 ceil(H/64) x 4 ceil(W/64)"

    @property
    def num_qualities(self) -> int:
        return len(self.lambdas)

    def latent_size(self, height, width):
        """Spatial size of ``y`` for an ``height x width`` image (after padding to a multiple of 64)."""
        f = HYPER_FACTOR
        return (-(-height // f)) * (f // LATENT_FACTOR), (-(-width // f)) * (f // LATENT_FACTOR)

    def _build_networks(self):
        channels = self.image_shape[-1]
        self.analysis = build_analysis(channels, self.n, self.m)
        self.synthesis = build_synthesis(channels, self.n, self.m)
        self.hyper_analysis = build_hyper_analysis(self.n, self.m)
        self.hyper_synthesis = build_hyper_synthesis(self.n, self.m)
        self.entropy_bottleneck = EntropyBottleneck(name="entropy_bottleneck")
        self.entropy_bottleneck.build((None, None, None, self.n))
        q = len(self.lambdas)
        start = self.initial_gains()
        self.gains = self.add_weight(name="gains", shape=(q, self.m),
                                     initializer=keras.initializers.Constant(start[:, None] * np.ones(self.m)))
        self.inverse_gains = self.add_weight(name="inverse_gains", shape=(q, self.m),
                                             initializer=keras.initializers.Constant(
                                                 (1.0 / start)[:, None] * np.ones(self.m)))

    def initial_gains(self) -> np.ndarray:
        """Each level's starting gain, ``sqrt(lambda / geometric mean of the lambdas)``.

        At high rates the best quantisation step shrinks as ``1 / sqrt(lambda)``, so the levels
        start spread over the rates they are asked for; from equal gains (all ones) a 7,000-step
        run left them within 7% of each other and every level at the same rate.
        """
        lambdas = np.asarray(self.lambdas, dtype=np.float64)
        return np.sqrt(lambdas / np.exp(np.mean(np.log(lambdas)))).astype("float32")

    def get_config(self):
        config = keras.Model.get_config(self)
        config.update(input_shape=list(self.image_shape), n=self.n, m=self.m, lambdas=list(self.lambdas),
                      quality=self.quality, seed=self.seed)
        return config

    # ------------------------------------------------------------- tensors
    def _gain(self, table, quality):
        """Gains for a batch: ``quality`` an int or a (B,) tensor of levels -> (B or 1, 1, 1, M)."""
        if isinstance(quality, int):
            return ops.reshape(table[quality], (1, 1, 1, self.m))
        return ops.reshape(ops.take(table, quality, axis=0), (-1, 1, 1, self.m))

    def scales_from(self, z_hat):
        """The scale of every element of y from the (quantised) hyper-latent."""
        return ops.softplus(ops.cast(self.hyper_synthesis(z_hat), "float32"))

    def analyse(self, x, quality):
        """Images -> ``(y, z)``: the gained latent and the hyper-latent, before rounding."""
        y = ops.cast(self.analysis(self.pad_to_stride(x)), "float32") * self._gain(self.gains, quality)
        z = ops.cast(self.hyper_analysis(ops.abs(y)), "float32")
        return y, z

    def synthesise(self, y_hat, quality):
        """Rounded latent -> images (linear output; clip for display)."""
        return ops.cast(self.synthesis(y_hat * self._gain(self.inverse_gains, quality)), "float32")

    def encode_tensor(self, x):
        """The rounded latent of the model's ``quality`` (float tensor of integers)."""
        y, _ = self.analyse(x, self.quality)
        return ops.round(y)

    def decode_tensor(self, y_hat):
        return ops.clip(self.synthesise(y_hat, self.quality), 0.0, 1.0)

    def reconstruct_tensor(self, inputs, training=None, quality=None):
        quality = self.quality if quality is None else quality
        y, _ = self.analyse(inputs, quality)
        return self.crop_like(ops.clip(self.synthesise(ops.round(y), quality), 0.0, 1.0), inputs)

    def _noise(self, t):
        return t + keras.random.uniform(ops.shape(t), -0.5, 0.5, seed=self.seed_generator)

    def forward_terms(self, x, training, quality=None):
        """Training: noisy rates and a level drawn per image; evaluation: rounding, levels in turn."""
        batch = ops.shape(x)[0]
        if quality is None:
            quality = (keras.random.randint((batch,), 0, self.num_qualities, seed=self.seed_generator)
                       if training else ops.mod(ops.arange(batch), self.num_qualities))
        y, z = self.analyse(x, quality)
        if training:
            z_rate, y_rate = self._noise(z), self._noise(y)
            y_dec = y + ops.stop_gradient(ops.round(y) - y)  # rounding, straight-through
        else:
            z_rate, y_rate, y_dec = ops.round(z), ops.round(y), ops.round(y)
        z_likelihood = self.entropy_bottleneck.likelihood(z_rate)
        y_likelihood = gaussian_likelihood(y_rate, self.scales_from(z_rate))
        lambdas = ops.take(ops.convert_to_tensor(self.lambdas, "float32"), quality, axis=0) \
            if not isinstance(quality, int) else ops.full((batch,), self.lambdas[quality])
        return {"x_hat": self.crop_like(self.synthesise(y_dec, quality), x), "y_likelihood": y_likelihood,
                "z_likelihood": z_likelihood, "lambda": lambdas}

    def losses_from(self, target, terms):
        target = ops.cast(target, "float32")
        shape = ops.shape(target)
        pixels = ops.cast(shape[1] * shape[2], "float32")
        y_bits = ops.sum(ops.reshape(-ops.log(terms["y_likelihood"]), (shape[0], -1)), axis=1)
        z_bits = ops.sum(ops.reshape(-ops.log(terms["z_likelihood"]), (shape[0], -1)), axis=1)
        bpp = (y_bits + z_bits) / (pixels * 0.6931471805599453)
        mse = ops.mean(ops.reshape(ops.square(target - terms["x_hat"]), (shape[0], -1)), axis=1)
        loss = ops.mean(bpp + terms["lambda"] * (255.0**2) * mse)
        return {"loss": loss, "bpp": ops.mean(bpp), "distortion": ops.mean(mse)}

    # --------------------------------------------------------------- numpy
    def rate_distortion(self, x, batch_size=16) -> list[dict]:
        """Estimated bits per pixel (from the entropy models, no coding) and PSNR per quality level.

        ``x``: images (N, H, W, C) in [0, 1]. The rate counts y and z as rounded at coding
        time; the coded streams (:mod:`medzoo.codec`) add a few header bytes.
        """
        x = self._check_images(x)
        rows = []
        for q in range(self.num_qualities):
            bits, sq, n = [], [], 0
            for i in range(0, len(x), batch_size):
                t = ops.convert_to_tensor(x[i:i + batch_size])
                terms = self.forward_terms(t, False, quality=q)
                values = self.losses_from(t, terms)
                k = int(t.shape[0])
                bits.append(float(ops.convert_to_numpy(values["bpp"])) * k)
                x_hat = np.clip(ops.convert_to_numpy(terms["x_hat"]), 0.0, 1.0)
                sq.extend(np.mean((x[i:i + k] - x_hat) ** 2, axis=(1, 2, 3)))
                n += k
            rows.append({"quality": q, "lambda": self.lambdas[q], "bpp": sum(bits) / n,
                         "psnr": float(np.mean(10 * np.log10(1.0 / np.maximum(sq, 1e-12))))})
        return rows
