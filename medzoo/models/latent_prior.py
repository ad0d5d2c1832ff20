"""A learned prior over an autoencoder's latents: class-conditional rectified flow on the latent grid.

A VAE's own prior N(0, I) is not where its encoder puts images (its aggregate posterior
is elsewhere), so decoding N(0, I) draws texture. :class:`LatentPrior` learns where the
latents of real images lie, by flow matching (rectified flow, Liu et al. 2022; Lipman et
al. 2023): a straight path ``x_t = (1 - t) x_0 + t e`` from a (normalised) latent ``x_0``
to Gaussian noise ``e``, and a network that predicts its velocity ``e - x_0``. Sampling
integrates that velocity from pure noise (t = 1) back to a latent (t = 0) in a few tens
of Euler steps, then the autoencoder's decoder makes the image. This is the recipe of
latent diffusion (MONAI MAISI trains a rectified flow on its VAE's latents).

The network is a small fully convolutional U-Net over the latent grid, so a prior trained
on 16x16 latents also runs on larger ones. It is conditioned on the time and on a label;
the extra "null" label (dropped labels during training) makes it an unconditional model
too, and mixing the two predictions is classifier-free guidance (Ho & Salimans 2022).

The prior names the autoencoder it serves (``autoencoder`` in its config); the zoo
attaches that model on load (``prior.autoencoder``), and :meth:`LatentPrior.generate`
and :meth:`LatentPrior.vary` use it to go between images and latents. Models never
import the zoo: attach an autoencoder yourself with :meth:`LatentPrior.attach` when
you build a prior by hand.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
from keras import ops

from medzoo.errors import ConfigError
from medzoo.models.execution import compiled
from medzoo.models.normalization import GroupNormalization
from medzoo.models.residual import SelfAttention2D, _groups

def timestep_embedding(t, dim: int, max_period: float = 10000.0):
    """Sinusoidal features of ``t`` in [0, 1] (scaled to [0, 1000], as in DDPM), shape ``(batch, dim)``."""
    half = dim // 2
    freqs = ops.exp(-math.log(max_period) * ops.arange(half, dtype="float32") / half)
    args = ops.cast(ops.reshape(t, (-1, 1)), "float32") * 1000.0 * ops.reshape(freqs, (1, half))
    return ops.concatenate([ops.cos(args), ops.sin(args)], axis=-1)


@keras.saving.register_keras_serializable(package="medzoo")
class ConditionedResBlock(keras.layers.Layer):
    """``norm -> act -> conv -> norm * (1 + scale) + shift -> act -> dropout -> conv`` + skip.

    ``scale`` and ``shift`` come from the conditioning vector (time and label), the
    adaptive GroupNorm of guided-diffusion U-Nets; the last convolution starts at zero,
    so every block starts as the identity.
    """

    def __init__(self, channels, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.dropout = float(dropout)

    def build(self, input_shape):
        x_shape, emb_shape = input_shape
        c_in = int(x_shape[-1])
        self.norm1 = GroupNormalization(groups=_groups(c_in, 32), name="norm1")
        self.norm1.build(x_shape)
        self.conv1 = keras.layers.Conv2D(self.channels, 3, padding="same", name="conv1")
        self.conv1.build(x_shape)
        inner = (*x_shape[:-1], self.channels)
        self.emb_proj = keras.layers.Dense(2 * self.channels, name="emb_proj")
        self.emb_proj.build(emb_shape)
        self.norm2 = GroupNormalization(groups=_groups(self.channels, 32), center=False, scale=False, name="norm2")
        self.norm2.build(inner)
        self.drop = keras.layers.Dropout(self.dropout, name="dropout")
        self.conv2 = keras.layers.Conv2D(self.channels, 3, padding="same", kernel_initializer="zeros", name="conv2")
        self.conv2.build(inner)
        self.skip = None
        if c_in != self.channels:
            self.skip = keras.layers.Conv2D(self.channels, 1, name="skip")
            self.skip.build(x_shape)
        self.built = True

    def call(self, inputs, training=None):
        x, emb = inputs
        h = self.conv1(ops.silu(self.norm1(x)))
        scale, shift = ops.split(self.emb_proj(ops.silu(emb)), 2, axis=-1)
        h = self.norm2(h) * (1.0 + scale[:, None, None, :]) + shift[:, None, None, :]
        h = self.conv2(self.drop(ops.silu(h), training=training))
        return (x if self.skip is None else self.skip(x)) + h

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="medzoo")
class LatentPrior(keras.Model):
    """A class-conditional rectified-flow prior over a zoo autoencoder's latent grid.

    Training data are the autoencoder's latents of real images (``{"latents": z, "labels":
    y}``, ``y`` an index into ``labels`` or ``-1`` for "no label"); ``fit`` minimises the
    flow-matching loss, drawing times, noise and label dropout inside the step, in every
    backend. Call :meth:`adapt` on the latents first: the flow runs on latents normalised
    per channel, and the statistics are weights of the model (saved with it).

    Args:
        latent_channels: channels of the autoencoder's latent.
        labels: class names the prior is conditioned on (may be empty: unconditional).
        autoencoder: zoo name of the autoencoder whose latents this prior models.
        image_channels: channels of the autoencoder's images.
        latent_size: the latent grid it was trained on ``(h, w)``: the default size of samples.
        channels: U-Net channels per level (each level after the first halves the grid).
        blocks: residual blocks per level.
        attention_levels: levels (0 = full latent resolution) with self-attention.
        embed_dim: width of the time and label embedding.
        dropout: dropout inside the residual blocks (a small dataset's guard against memorising).
        label_dropout: share of training labels replaced by the null label (for guidance).
        seed: seed of the training noise.

    Example:
        >>> prior = medzoo.load("prior-chestxray-f8c4")          # loads vae-chestxray-f8c4 too
        >>> images = prior.generate(8, label="pneumonia", seed=0)
        >>> more = prior.vary(images[:2], strength=0.5, seed=1)
    """

    def __init__(self, latent_channels=4, labels=(), autoencoder=None, image_channels=1, latent_size=(16, 16),
                 channels=(64, 128, 192), blocks=2, attention_levels=(1, 2), embed_dim=256, dropout=0.1,
                 label_dropout=0.1, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.latent_channels = int(latent_channels)
        self._labels = [str(label) for label in labels]
        if len(set(self._labels)) != len(self._labels):
            raise ConfigError(f"labels must be distinct, got {self._labels}")
        self.autoencoder_name = autoencoder
        self.image_channels = int(image_channels)
        self.latent_grid = tuple(int(v) for v in latent_size)
        self.channels = [int(c) for c in channels]
        self.blocks = int(blocks)
        self.attention_levels = [int(a) for a in attention_levels]
        self.embed_dim = int(embed_dim)
        self.dropout = float(dropout)
        if not 0.0 <= label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.label_dropout = float(label_dropout)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        object.__setattr__(self, "_attached", None)  # not tracked: its weights are not the prior's
        object.__setattr__(self, "_compiled", {})
        self._build_network()
        self.loss_tracker = keras.metrics.Mean(name="loss")

    # ------------------------------------------------------------------ network
    def _build_network(self):
        c = self.latent_channels
        self.latent_mean = self.add_weight(name="latent_mean", shape=(c,), initializer="zeros", trainable=False)
        self.latent_std = self.add_weight(name="latent_std", shape=(c,), initializer="ones", trainable=False)
        self.time_mlp = [keras.layers.Dense(self.embed_dim, activation="silu", name="time_dense1"),
                         keras.layers.Dense(self.embed_dim, name="time_dense2")]
        # index len(labels) is the null label
        self.label_embedding = keras.layers.Embedding(len(self._labels) + 1, self.embed_dim, name="label_embedding")
        self.conv_in = keras.layers.Conv2D(self.channels[0], 3, padding="same", name="conv_in")
        self.down, self.down_attn, self.downsample = [], [], []
        for level, ch in enumerate(self.channels):
            self.down.append([ConditionedResBlock(ch, self.dropout, name=f"down{level}_block{i}")
                              for i in range(self.blocks)])
            self.down_attn.append([SelfAttention2D(name=f"down{level}_attn{i}") for i in range(self.blocks)]
                                  if level in self.attention_levels else [])
            if level < len(self.channels) - 1:
                self.downsample.append(keras.layers.Conv2D(ch, 3, strides=2, padding="same", name=f"down{level}_pool"))
        top = self.channels[-1]
        self.mid = [ConditionedResBlock(top, self.dropout, name="mid_block0"), SelfAttention2D(name="mid_attn"),
                    ConditionedResBlock(top, self.dropout, name="mid_block1")]
        self.up, self.up_attn, self.upsample = [], [], []
        for level in reversed(range(len(self.channels))):
            ch = self.channels[level]
            self.up.append([ConditionedResBlock(ch, self.dropout, name=f"up{level}_block{i}")
                            for i in range(self.blocks + 1)])
            self.up_attn.append([SelfAttention2D(name=f"up{level}_attn{i}") for i in range(self.blocks + 1)]
                                if level in self.attention_levels else [])
            if level > 0:
                self.upsample.append(keras.layers.Conv2D(ch, 3, padding="same", name=f"up{level}_conv"))
        self.norm_out = GroupNormalization(groups=_groups(self.channels[0], 32), name="norm_out")
        self.conv_out = keras.layers.Conv2D(c, 3, padding="same", kernel_initializer="zeros", name="conv_out")

    @property
    def labels(self) -> list[str]:
        """The class names this prior is conditioned on (``generate(label=...)`` takes one of them or None)."""
        return list(self._labels)

    @property
    def null_label(self) -> int:
        return len(self._labels)

    @property
    def image_shape(self) -> tuple:
        """The autoencoder's image shape (any size): what ``generate`` returns and ``vary`` takes."""
        return (None, None, self.image_channels)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def build(self, input_shape=None):
        if self.built:
            return
        z = ops.zeros((1, *self.latent_grid, self.latent_channels))
        # one eager pass creates the weights; TensorFlow would warn that its fused GroupNorm traces once per
        # channel width (expected here, once per model), so its logger is quiet for that pass
        tf_log = logging.getLogger("tensorflow")
        level = tf_log.level
        tf_log.setLevel(logging.ERROR)
        try:
            self.velocity(z, ops.zeros((1,)), ops.zeros((1,), dtype="int32"))
        finally:
            tf_log.setLevel(level)
        self.built = True

    def velocity(self, x, t, labels, training=False):
        """The network: predicted velocity ``e - x_0`` at normalised latents ``x``, times ``t``, label indices."""
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        s = self.stride
        pad_h, pad_w = (-x.shape[1]) % s if x.shape[1] else 0, (-x.shape[2]) % s if x.shape[2] else 0
        if pad_h or pad_w:
            x = ops.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        emb = timestep_embedding(t, self.embed_dim)
        for layer in self.time_mlp:
            emb = layer(emb)
        emb = emb + self.label_embedding(ops.cast(labels, "int32"))
        h = self.conv_in(x)
        skips = [h]
        for level, blocks in enumerate(self.down):
            for i, block in enumerate(blocks):
                h = block((h, emb), training=training)
                if self.down_attn[level]:
                    h = self.down_attn[level][i](h)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        h = self.mid[0]((h, emb), training=training)
        h = self.mid[1](h)
        h = self.mid[2]((h, emb), training=training)
        for k, blocks in enumerate(self.up):
            for i, block in enumerate(blocks):
                h = block((ops.concatenate([h, skips.pop()], axis=-1), emb), training=training)
                if self.up_attn[k]:
                    h = self.up_attn[k][i](h)
            if k < len(self.upsample):
                h = ops.repeat(ops.repeat(h, 2, axis=1), 2, axis=2)
                h = self.upsample[k](h)
        out = self.conv_out(ops.silu(self.norm_out(h)))
        return out[:, :height, :width, :]

    # ----------------------------------------------------------------- training
    def normalize(self, z):
        return (z - self.latent_mean) / self.latent_std

    def denormalize(self, x):
        return x * self.latent_std + self.latent_mean

    def adapt(self, latents) -> None:
        """Set the per-channel mean and standard deviation of the latents the flow normalises by."""
        z = np.asarray(latents, np.float32).reshape(-1, self.latent_channels)
        self.latent_mean.assign(z.mean(axis=0))
        self.latent_std.assign(np.maximum(z.std(axis=0), 1e-6))

    def flow_matching_loss(self, latents, labels, training=True):
        """Per-example mean squared error between predicted and true velocity on a random point of the path.

        Times are logit-normal (Esser et al. 2024: more weight to the middle of the path,
        where the velocity is hardest to predict); a share ``label_dropout`` of labels
        becomes the null label, and ``-1`` ("unlabelled") always does.
        """
        x0 = self.normalize(ops.cast(latents, "float32"))
        batch = ops.shape(x0)[0]
        t = ops.sigmoid(keras.random.normal((batch,), seed=self.seed_generator))
        noise = keras.random.normal(ops.shape(x0), seed=self.seed_generator)
        tt = ops.reshape(t, (-1, 1, 1, 1))
        xt = (1.0 - tt) * x0 + tt * noise
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        drop = keras.random.uniform((batch,), seed=self.seed_generator) < self.label_dropout
        labels = ops.where(ops.logical_or(drop, labels < 0), self.null_label, labels)
        v = self.velocity(xt, t, labels, training=training)
        return ops.mean(ops.square(v - (noise - x0)), axis=(1, 2, 3))

    def call(self, inputs, training=None):
        """``{"latents", "labels"}`` -> per-example flow-matching loss (what ``fit`` minimises)."""
        return self.flow_matching_loss(inputs["latents"], inputs["labels"], training=bool(training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = ops.mean(y_pred)
        self.loss_tracker.update_state(loss, sample_weight=ops.shape(y_pred)[0])
        return loss

    def train_step(self, data):
        """Keras' step with the flow-matching loss; labels travel inside ``x`` (``y`` is ignored)."""
        if isinstance(data, tuple):
            data = data[0]
        return super().train_step(data)

    def test_step(self, data):
        if isinstance(data, tuple):
            data = data[0]
        return super().test_step(data)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return {"loss": self.loss_tracker.result()}

    def compile(self, optimizer=None, **kwargs):
        """Adam(2e-4) unless told otherwise; the loss is the model's own."""
        if kwargs.pop("loss", None) is not None:
            raise ConfigError("a LatentPrior computes its own (flow-matching) loss; compile it without loss=")
        kwargs.setdefault("jit_compile", False if keras.backend.backend() == "tensorflow" else "auto")
        super().compile(optimizer=optimizer or keras.optimizers.Adam(2e-4), **kwargs)

    def fit(self, *args, **kwargs):
        if not self.compiled:
            self.compile()
        return super().fit(*args, **kwargs)

    def get_config(self):
        return {**super().get_config(), "latent_channels": self.latent_channels, "labels": self.labels,
                "autoencoder": self.autoencoder_name, "image_channels": self.image_channels,
                "latent_size": list(self.latent_grid), "channels": self.channels, "blocks": self.blocks,
                "attention_levels": self.attention_levels, "embed_dim": self.embed_dim, "dropout": self.dropout,
                "label_dropout": self.label_dropout, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        config.pop("dtype", None)
        return cls(**config)

    def get_build_config(self):
        return {"latent_size": list(self.latent_grid)}

    def build_from_config(self, config):
        self.build()

    # ----------------------------------------------------------------- sampling
    @property
    def autoencoder(self):
        """The autoencoder that decodes the prior's latents (attached by ``medzoo.load``), or None."""
        return self._attached

    def attach(self, autoencoder) -> "LatentPrior":
        """Use ``autoencoder`` to decode samples and encode images; its latent must match the prior's."""
        channels = getattr(autoencoder, "latent_channels", None)
        if channels != self.latent_channels:
            raise ConfigError(f"this prior models latents with {self.latent_channels} channels; "
                              f"{type(autoencoder).__name__} makes {channels}")
        object.__setattr__(self, "_attached", autoencoder)
        return self

    def _require_autoencoder(self):
        if self.autoencoder is None:
            raise ConfigError(f"this prior has no autoencoder attached: load it with medzoo.load (which loads "
                              f"{self.autoencoder_name or 'its autoencoder'}) or call prior.attach(autoencoder)")
        return self.autoencoder

    def label_index(self, label) -> int:
        """A label name (or None, or an index) -> its index; unknown labels list the allowed ones."""
        if label is None:
            return self.null_label
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if 0 <= int(label) < len(self._labels):
                return int(label)
        elif isinstance(label, str):
            wanted = label.strip().lower()
            for i, name in enumerate(self._labels):
                if name.lower() == wanted:
                    return i
        allowed = ", ".join(self._labels) if self._labels else "none: this prior is unconditional"
        raise ConfigError(f"unknown label {label!r}; labels: {allowed} (or None for any)")

    def _labels_for(self, label, n) -> np.ndarray:
        if isinstance(label, (list, tuple, np.ndarray)):
            if len(label) != n:
                raise ConfigError(f"{len(label)} labels given for {n} images")
            return np.array([self.label_index(v) for v in label], np.int32)
        return np.full((n,), self.label_index(label), np.int32)

    def _guided(self):
        """A compiled step: ``(x, t, labels, guidance) -> guided velocity`` (two passes in one batch)."""
        if "guided" not in self._compiled:
            def fn(x, t, labels, guidance):
                n = ops.shape(x)[0]
                both = self.velocity(ops.concatenate([x, x], axis=0), ops.concatenate([t, t], axis=0),
                                     ops.concatenate([labels, ops.full_like(labels, self.null_label)], axis=0))
                cond, uncond = both[:n], both[n:]
                g = ops.reshape(guidance, (-1, 1, 1, 1))
                return uncond + g * (cond - uncond)

            self._compiled["guided"] = compiled(self, fn)
        return self._compiled["guided"]

    def _integrate(self, x, labels, t_start, steps, guidance, batch_size) -> np.ndarray:
        """Euler steps of the guided velocity from ``t_start`` down to 0, on normalised latents.

        ``guidance``: one scale for all, or one per row of ``x``.
        """
        step = self._guided()
        times = np.linspace(t_start, 0.0, steps + 1, dtype=np.float32)
        out = []
        for i in range(0, len(x), batch_size):
            xb, lb = x[i:i + batch_size].astype(np.float32), labels[i:i + batch_size].astype(np.int32)
            g = np.broadcast_to(np.asarray(guidance, np.float32), (len(x),))[i:i + batch_size].copy()
            for t0, t1 in zip(times[:-1], times[1:]):
                xb = xb + (t1 - t0) * step(xb, np.full((len(xb),), t0, np.float32), lb, g)
            out.append(xb)
        return np.concatenate(out) if out else x

    def sampling_defaults(self) -> tuple[int, float]:
        """``(steps, guidance)``: what the preset's benchmark measured (its ``training.sampling``), else 30 and 1.5."""
        sampling = self._sampling_record()
        return int(sampling.get("steps", 30)), float(sampling.get("guidance", 1.5))

    def _sampling_record(self) -> dict:
        return ((getattr(self, "zoo_metadata", None) or {}).get("training") or {}).get("sampling") or {}

    @property
    def guidance_per_label(self) -> dict:
        """The preset's guidance scale for each label that has its own (``training.sampling.guidance_per_label``).

        A label's own scale trades how surely a sample shows its class against how near it may sit
        to the training images; a preset sets it where its validation sweep found the balance
        (``tools/prior_guidance_sweep.py``). Labels not named use the preset's ``guidance``.
        """
        per_label = self._sampling_record().get("guidance_per_label") or {}
        return {self.labels[self.label_index(name)]: float(g) for name, g in per_label.items()}

    def _guidance_for(self, labels: np.ndarray, guidance) -> np.ndarray:
        """One guidance scale per sample: ``guidance`` where given, else each label's default."""
        if guidance is not None:
            self._check_sampling(1, guidance)
            return np.full(len(labels), float(guidance), np.float32)
        default = self.sampling_defaults()[1]
        own = self.guidance_per_label
        names = [self.labels[i] if 0 <= i < len(self.labels) else None for i in labels]
        return np.array([own.get(name, default) for name in names], np.float32)

    def _check_sampling(self, steps, guidance):
        if int(steps) != steps or steps < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
        if not np.isfinite(guidance) or guidance < 0:
            raise ConfigError(f"guidance must be >= 0 (1 = plain conditional, 0 = unconditional), got {guidance!r}")

    def sample_latents(self, n, label=None, seed=0, steps=None, guidance=None, latent_size=None,
                       batch_size=64) -> np.ndarray:
        """``n`` latents (the autoencoder's scale) drawn from the prior; deterministic for a seed in every backend.

        The starting noise comes from numpy's generator seeded with ``seed``, so the same
        seed gives the same samples whatever the backend (up to floating-point rounding).
        """
        if int(n) != n or n < 1:
            raise ConfigError(f"n must be an integer >= 1, got {n!r}")
        steps = self.sampling_defaults()[0] if steps is None else steps
        self._check_sampling(steps, 1.0 if guidance is None else guidance)
        labels = self._labels_for(label, int(n))
        scales = self._guidance_for(labels, guidance)
        h, w = self.latent_grid if latent_size is None else (int(latent_size[0]), int(latent_size[1]))
        if h % self.stride or w % self.stride or min(h, w) < self.stride:
            raise ConfigError(f"a latent of {h}x{w} does not fit this prior's network: its sides must be multiples "
                              f"of {self.stride} (images whose sides are multiples of {self.stride} latent cells)")
        noise = np.random.default_rng(seed).standard_normal((int(n), h, w, self.latent_channels)).astype(np.float32)
        x = self._integrate(noise, labels, 1.0, int(steps), scales, batch_size)
        return x * np.asarray(self.latent_std) + np.asarray(self.latent_mean)

    def generate(self, n, label=None, seed=0, steps=None, guidance=None, size=None, batch_size=64) -> np.ndarray:
        """``n`` synthetic images ``(n, H, W, C)`` in the autoencoder's input range (e.g. [0, 1]).

        Args:
            n: how many images.
            label: a name from :attr:`labels` (case-insensitive), its index, one per image (a
                list), or None for the unconditional model.
            seed: the same seed gives the same images.
            steps: Euler steps from noise to latent (more: slower, slightly sharper); default
                the preset's (:meth:`sampling_defaults`).
            guidance: classifier-free guidance scale (1: conditional model alone; higher:
                closer to the label, less varied; ignored for ``label=None``); default the preset's,
                each label's own where the preset sets one (:attr:`guidance_per_label`).
            size: ``(H, W)`` of the images (default: the size the prior was trained at).
        """
        ae = self._require_autoencoder()
        latent_size = None
        if size is not None:
            latent_size = ae.latent_size(*size) if hasattr(ae, "latent_size") else None
        z = self.sample_latents(n, label, seed, steps, guidance, latent_size, batch_size)
        return ae.decode(z, batch_size=batch_size, output_size=None if size is None else tuple(size))

    def vary(self, images, strength=0.5, seed=0, label=None, steps=None, guidance=1.0, batch_size=64,
             preprocess=False) -> np.ndarray:
        """Variations of real images: encode, move ``strength`` of the way towards noise, integrate back.

        ``strength`` 0 gives the reconstructions, 1 fresh samples; about 0.3-0.6 keeps
        the anatomy and changes the details. ``label`` (default: none) steers the way back.
        ``preprocess=True`` takes raw images (uint8, DICOM values) through the autoencoder's spec.
        """
        ae = self._require_autoencoder()
        if not 0.0 < float(strength) <= 1.0:
            raise ConfigError(f"strength must be in (0, 1], got {strength!r}")
        steps = self.sampling_defaults()[0] if steps is None else steps
        self._check_sampling(steps, guidance)
        images = ae.preprocess(images) if preprocess else np.asarray(images)
        if images.ndim == len(ae.image_shape):  # one image
            images = images[None]
        z = ae.encode(images, batch_size=batch_size)  # checks them (range, size, domain)
        x0 = (z - np.asarray(self.latent_mean)) / np.asarray(self.latent_std)
        noise = np.random.default_rng(seed).standard_normal(x0.shape).astype(np.float32)
        s = float(strength)
        xt = ((1.0 - s) * x0 + s * noise).astype(np.float32)
        n_steps = max(1, int(round(int(steps) * s)))
        x = self._integrate(xt, self._labels_for(label, len(x0)), s, n_steps, float(guidance), batch_size)
        z = x * np.asarray(self.latent_std) + np.asarray(self.latent_mean)
        return ae.decode(z, batch_size=batch_size, output_size=images.shape[1:3])
