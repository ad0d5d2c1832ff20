"""The any-size residual encoder and decoder (``architecture="residual"``), in ``keras.ops`` only.

The shape of the latent-diffusion KL autoencoders, MedVAE and MONAI's MAISI VAE,
sized for a CPU: fully convolutional, so one model runs on images of any size, with
a small spatial latent ``f`` times smaller per side and ``c`` channels.

Encoder, for ``f = 2**L`` and ``filters = [c_0, ..., c_{L-1}]``::

    SpaceToDepth(2) -> Conv 3x3 to c_0                      (H/2: the cheap stem)
    level i: blocks_per_level x ResidualBlock(c_i), then
             Conv 3x3 stride 2 to c_{i+1} (not after the last level)
    [SelfAttention2D -> ResidualBlock]                      (at H/f, optional)
    GroupNorm -> SiLU -> Conv 3x3 to the latent head(s)

Decoder, the mirror image: Conv 3x3 from the latent, [ResidualBlock ->
SelfAttention2D], per level ``blocks_per_level`` residual blocks then nearest
upsampling x2 and a 3x3 convolution, and a sub-pixel head (Conv 3x3 to ``4 * C``
channels, ``DepthToSpace(2)``) back to full resolution. The stem and the head are
what keep it cheap: nothing runs at full resolution but two thin layers.

``ResidualBlock``: ``norm -> SiLU -> Conv 3x3 -> norm -> SiLU -> Conv 3x3`` plus the
input (through a 1x1 convolution when the channel count changes), with the last
convolution initialised small so that every block starts close to the identity.

Both networks have Keras input shape ``(None, None, C)``; they need H and W to be
multiples of ``f``, which :class:`~medzoo.models.base.AutoencoderModel` ensures by
padding (see its ``pad_to_stride``).
"""

from __future__ import annotations

import keras
from keras import ops

from medzoo.errors import ConfigError
from medzoo.models.normalization import GroupNormalization

#: accepted downsampling factors of the residual architecture (2**depth)
DOWNSAMPLE_FACTORS = (2, 4, 8, 16)


@keras.saving.register_keras_serializable(package="medzoo")
class SpaceToDepth(keras.layers.Layer):
    """Fold each ``block x block`` patch into channels: (N, H, W, C) -> (N, H/b, W/b, C*b*b).

    H and W must be multiples of ``block``. Channel order: ``(dy, dx, c)``, as in
    ``tf.nn.space_to_depth``; :class:`DepthToSpace` is its exact inverse.
    """

    def __init__(self, block=2, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, x):
        b = self.block
        shape = ops.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
        x = ops.reshape(x, (n, h // b, b, w // b, b, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (n, h // b, w // b, c * b * b))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block
        return (n, None if h is None else h // b, None if w is None else w // b, c * b * b)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package="medzoo")
class DepthToSpace(keras.layers.Layer):
    """Unfold channels into ``block x block`` patches: (N, H, W, C*b*b) -> (N, H*b, W*b, C)."""

    def __init__(self, block=2, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, x):
        b = self.block
        shape = ops.shape(x)
        n, h, w = shape[0], shape[1], shape[2]
        c = x.shape[-1] // (b * b)
        x = ops.reshape(x, (n, h, w, b, b, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (n, h * b, w * b, c))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block
        return (n, None if h is None else h * b, None if w is None else w * b, c // (b * b))

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package="medzoo")
class BilinearUpsample2x(keras.layers.Layer):
    """Bilinear 2x upsampling (half-pixel centres, edges clamped): ``tf.image.resize``'s result, in ``keras.ops``.

    Each output pixel is 3/4 of its nearest input pixel plus 1/4 of the next one away, per axis.
    Keras' ``UpSampling2D(interpolation="bilinear")`` computes the same, but under TensorFlow it
    fails on a second image size once its graph has unknown height and width
    (``OperatorNotAllowedInGraphError``); this layer is shape-free on every backend.
    """

    def call(self, x):
        shape = ops.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
        x = _interleave(x, axis=1)
        x = ops.reshape(x, (n, h * 2, w, c))
        x = _interleave(x, axis=2)
        return ops.reshape(x, (n, h * 2, w * 2, c))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h * 2, None if w is None else w * 2, c)


def _interleave(x, axis: int):
    """``x`` with a new axis after ``axis`` holding the (even, odd) output samples of bilinear 2x upsampling."""
    first = ops.take(x, ops.convert_to_tensor([0]), axis=axis)
    last = ops.take(x, ops.convert_to_tensor([-1]), axis=axis)
    length = ops.shape(x)[axis]
    before = ops.concatenate([first, ops.take(x, ops.arange(0, length - 1), axis=axis)], axis=axis)
    after = ops.concatenate([ops.take(x, ops.arange(1, length), axis=axis), last], axis=axis)
    return ops.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], axis=axis + 1)


@keras.saving.register_keras_serializable(package="medzoo")
class SelfAttention2D(keras.layers.Layer):
    """Single-head self-attention over all positions of a feature map, with a residual connection.

    ``x + proj(softmax(q k^T / sqrt(C)) v)`` on GroupNorm-ed features, as in the
    mid-block of the LDM autoencoders. Cost grows with (H*W)^2, so the builders place
    it only at the lowest resolution. It is global: with it, a tile's output depends
    on the whole tile, which tiled inference's overlap then has to absorb.
    """

    def __init__(self, groups=8, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.norm = GroupNormalization(groups=_groups(channels, self.groups), name="norm")
        self.norm.build(input_shape)
        self.qkv = keras.layers.Dense(3 * channels, name="qkv")
        self.qkv.build((None, channels))
        self.proj = keras.layers.Dense(channels, kernel_initializer=keras.initializers.VarianceScaling(0.01),
                                       name="proj")
        self.proj.build((None, channels))
        self.built = True

    def call(self, x):
        shape = ops.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
        tokens = ops.reshape(self.norm(x), (n, h * w, c))
        q, k, v = ops.split(self.qkv(tokens), 3, axis=-1)
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) * (float(c) ** -0.5)
        attended = ops.matmul(ops.softmax(scores, axis=-1), v)
        return x + ops.reshape(self.proj(attended), (n, h, w, c))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


def _groups(channels: int, wanted: int = 8) -> int:
    """The largest group count <= ``wanted`` that divides ``channels``."""
    return next(g for g in range(min(wanted, channels), 0, -1) if channels % g == 0)


def _norm(normalization: str, channels: int, name: str):
    """GroupNorm (statistics over the whole feature map), LayerNorm (per position) or nothing."""
    if normalization == "group":
        return GroupNormalization(groups=_groups(channels), name=name)
    if normalization == "layer":
        return keras.layers.LayerNormalization(name=name)
    if normalization == "none":
        return keras.layers.Identity(name=name)
    raise ConfigError(f'the residual architecture takes normalization "group", "layer" or "none", '
                      f'not {normalization!r} (batch statistics do not suit patch training and any-size inference)')


def residual_block(x, channels: int, *, normalization: str, activation: str, name: str):
    """``norm -> act -> conv -> norm -> act -> conv`` + skip; starts near the identity."""
    skip = x
    if x.shape[-1] != channels:
        skip = keras.layers.Conv2D(channels, 1, name=f"{name}_skip")(x)
    h = _norm(normalization, x.shape[-1], f"{name}_norm1")(x)
    h = keras.layers.Activation(activation, name=f"{name}_act1")(h)
    h = keras.layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv1")(h)
    h = _norm(normalization, channels, f"{name}_norm2")(h)
    h = keras.layers.Activation(activation, name=f"{name}_act2")(h)
    h = keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer=keras.initializers.VarianceScaling(0.1),
                            name=f"{name}_conv2")(h)
    return keras.layers.Add(name=f"{name}_add")([skip, h])


def check_residual_depth(depth: int) -> int:
    """The residual architecture's ``depth`` (levels) must give ``f = 2**depth`` in :data:`DOWNSAMPLE_FACTORS`."""
    if 2**depth not in DOWNSAMPLE_FACTORS:
        raise ConfigError(f"the residual architecture downsamples by f = 2**depth in {DOWNSAMPLE_FACTORS}; "
                          f"depth={depth} gives {2**depth}")
    return depth


def build_residual_encoder(
    channels,
    filters: list[int],
    *,
    normalization: str = "group",
    activation: str = "silu",
    latent_channels: int,
    heads: int = 1,
    blocks_per_level: int = 1,
    attention: bool = False,
    name: str = "encoder",
) -> keras.Model:
    """Image (N, H, W, channels) -> ``heads`` spatial latents (N, H/f, W/f, latent_channels); ``f = 2**len(filters)``."""
    check_residual_depth(len(filters))
    act = dict(normalization=normalization, activation=activation)
    inputs = keras.Input(shape=(None, None, channels), name="image")
    x = SpaceToDepth(2, name="stem_fold")(inputs)
    x = keras.layers.Conv2D(filters[0], 3, padding="same", name="stem_conv")(x)
    for i, f in enumerate(filters):
        for b in range(blocks_per_level):
            x = residual_block(x, f, **act, name=f"down{i}_block{b}")
        if i + 1 < len(filters):
            x = keras.layers.Conv2D(filters[i + 1], 3, strides=2, padding="same", name=f"down{i}_downsample")(x)
    if attention:
        x = SelfAttention2D(name="mid_attention")(x)
        x = residual_block(x, filters[-1], **act, name="mid_block")
    x = _norm(normalization, filters[-1], "out_norm")(x)
    x = keras.layers.Activation(activation, name="out_act")(x)
    outputs = [keras.layers.Conv2D(latent_channels, 3, padding="same", dtype="float32", name=f"head{k}")(x)
               for k in range(heads)]
    return keras.Model(inputs, outputs[0] if heads == 1 else outputs, name=name)


def build_residual_decoder(
    channels,
    filters: list[int],
    *,
    normalization: str = "group",
    activation: str = "silu",
    latent_channels: int,
    blocks_per_level: int = 1,
    attention: bool = False,
    name: str = "decoder",
) -> keras.Model:
    """Latent (N, h, w, latent_channels) -> image logits (N, h*f, w*f, channels): the mirror of the encoder."""
    check_residual_depth(len(filters))
    act = dict(normalization=normalization, activation=activation)
    inputs = keras.Input(shape=(None, None, latent_channels), name="latent")
    x = keras.layers.Conv2D(filters[-1], 3, padding="same", name="in_conv")(inputs)
    if attention:
        x = residual_block(x, filters[-1], **act, name="mid_block")
        x = SelfAttention2D(name="mid_attention")(x)
    for i in reversed(range(len(filters))):
        for b in range(blocks_per_level):
            x = residual_block(x, filters[i], **act, name=f"up{i}_block{b}")
        if i > 0:
            x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}_upsample")(x)
            x = keras.layers.Conv2D(filters[i - 1], 3, padding="same", name=f"up{i}_conv")(x)
    x = _norm(normalization, filters[0], "out_norm")(x)
    x = keras.layers.Activation(activation, name="out_act")(x)
    x = keras.layers.Conv2D(4 * channels, 3, padding="same", dtype="float32", name="to_subpixels")(x)
    logits = DepthToSpace(2, dtype="float32", name="to_image")(x)
    return keras.Model(inputs, logits, name=name)
