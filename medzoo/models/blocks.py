"""The convolutional encoder and decoder that every medzoo family shares.

One builder for all three families keeps their architectures comparable: a
``ConvAutoencoder``, a ``VAE`` and a ``VQVAE`` with the same ``filters`` and
``depth`` differ only in their bottleneck and loss.

Encoder, one level per entry of ``filters`` (each halves H and W)::

    Conv 3x3 stride 2 -> norm -> act -> Conv 3x3 -> norm -> act

Decoder, the mirror image, with a 4x4 stride-2 transposed convolution (a kernel
size divisible by the stride, so no checkerboard artefacts) to go up a level, and
a final 3x3 convolution to the image channels. The decoder returns *pre-activation*
outputs (logits); the model applies its output activation, which lets a Bernoulli
loss work on logits for numerical stability.
"""

from __future__ import annotations

import keras

from medzoo.errors import ConfigError
from medzoo.models.normalization import GroupNormalization

NORMALIZATIONS = ("batch", "group", "layer", "none")


def resolve_filters(filters, depth) -> list[int]:
    """Filters per level: an int doubles per level, a list is taken as given.

    Args:
        filters: base filter count (int) or one count per level (list/tuple).
        depth: number of levels; ``None`` takes it from the length of ``filters``.
    """
    if isinstance(filters, int):
        if depth is None:
            raise ConfigError("give `depth` when `filters` is a single int")
        out = [filters * 2**i for i in range(depth)]
    else:
        out = [int(f) for f in filters]
        if depth is not None and len(out) != depth:
            raise ConfigError(f"`filters` has {len(out)} levels but depth={depth}")
    if not out or any(f < 1 for f in out):
        raise ConfigError(f"filters must be positive and at least one level, got {filters!r}")
    return out


def check_input_shape(input_shape, depth) -> tuple[int, int, int]:
    """Validate ``(H, W, C)``: C in {1, 3}; H and W multiples of ``2**depth``."""
    try:
        h, w, c = (int(v) for v in input_shape)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"input_shape must be (H, W, C), got {input_shape!r}") from exc
    if c not in (1, 3):
        raise ConfigError(f"input_shape must have 1 or 3 channels, got {c}")
    step = 2**depth
    if h % step or w % step or h < step or w < step:
        raise ConfigError(
            f"input_shape {h}x{w} must be a multiple of 2**depth = {step} "
            f"(depth={depth}); pad or resize the images, or lower depth"
        )
    return h, w, c


def _norm(normalization: str, channels: int, name: str):
    if normalization == "batch":
        return keras.layers.BatchNormalization(name=name)
    if normalization == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return GroupNormalization(groups=groups, name=name)
    if normalization == "layer":
        return keras.layers.LayerNormalization(name=name)
    if normalization == "none":
        return None
    raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _conv_unit(x, layer, normalization, activation, name):
    """Apply ``layer``, then normalisation and activation."""
    x = layer(x)
    norm = _norm(normalization, layer.filters, f"{name}_norm")
    if norm is not None:
        x = norm(x)
    return keras.layers.Activation(activation, name=f"{name}_act")(x)


def build_encoder(
    input_shape,
    filters: list[int],
    *,
    normalization: str,
    activation: str,
    latent_channels: int | None = None,
    latent_dim: int | None = None,
    heads: int = 1,
    name: str = "encoder",
) -> keras.Model:
    """Image -> ``heads`` latent tensors (spatial ``h x w x latent_channels`` or flat ``latent_dim``).

    A VAE asks for two heads (mean and log-variance); the other families for one.
    """
    if (latent_channels is None) == (latent_dim is None):
        raise ConfigError("set exactly one of latent_channels (spatial code) or latent_dim (flat code)")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = _conv_unit(x, keras.layers.Conv2D(f, 3, strides=2, padding="same", name=f"down{i}_conv"),
                       normalization, activation, f"down{i}_a")
        x = _conv_unit(x, keras.layers.Conv2D(f, 3, padding="same", name=f"down{i}_refine"),
                       normalization, activation, f"down{i}_b")
    if latent_dim is not None:
        x = keras.layers.Flatten(name="flatten")(x)
        outputs = [keras.layers.Dense(latent_dim, name=f"head{k}")(x) for k in range(heads)]
    else:
        outputs = [keras.layers.Conv2D(latent_channels, 1, name=f"head{k}")(x) for k in range(heads)]
    return keras.Model(inputs, outputs[0] if heads == 1 else outputs, name=name)


def build_decoder(
    output_shape,
    filters: list[int],
    *,
    normalization: str,
    activation: str,
    latent_channels: int | None = None,
    latent_dim: int | None = None,
    name: str = "decoder",
) -> keras.Model:
    """Latent -> image logits of ``output_shape`` (the mirror of :func:`build_encoder`)."""
    h, w, c = output_shape
    depth = len(filters)
    lh, lw = h // 2**depth, w // 2**depth
    if latent_dim is not None:
        inputs = keras.Input(shape=(latent_dim,), name="latent")
        x = keras.layers.Dense(lh * lw * filters[-1], name="project")(inputs)
        x = keras.layers.Reshape((lh, lw, filters[-1]), name="unflatten")(x)
        x = keras.layers.Activation(activation, name="project_act")(x)
    else:
        inputs = keras.Input(shape=(lh, lw, latent_channels), name="latent")
        x = inputs
    for i in reversed(range(depth)):
        x = _conv_unit(x, keras.layers.Conv2D(filters[i], 3, padding="same", name=f"up{i}_refine"),
                       normalization, activation, f"up{i}_a")
        out_f = filters[i - 1] if i > 0 else filters[0]
        x = _conv_unit(x, keras.layers.Conv2DTranspose(out_f, 4, strides=2, padding="same", name=f"up{i}_conv"),
                       normalization, activation, f"up{i}_b")
    # float32 output keeps the loss stable under a mixed-precision policy
    logits = keras.layers.Conv2D(c, 3, padding="same", dtype="float32", name="to_image")(x)
    return keras.Model(inputs, logits, name=name)
