"""Segmentation from a zoo encoder: its per-level features and a light U-Net decoder.

Why a zoo encoder: medical masks are scarce, and an encoder pretrained to reconstruct
thousands of unlabelled images of the modality should need fewer of them than a
network trained from scratch (``benchmarks/segmentation.py`` measures by how much).

Network, for an encoder of ``L`` levels (the any-size residual encoder of
:mod:`medzoo.models.residual`, cut after each level's last residual block)::

    features_i = encoder level i output          (H / 2**(i+1), filters[i] channels)
    x = ResidualBlock(features_{L-1})
    for i = L-2 .. 0:  x = ResidualBlock(concat(Conv(Upsample(x)), features_i))
    x = concat(Upsample(x), Conv(image))          (back to full resolution)
    logits = Conv1x1(ResidualBlock(x))            (1 channel, or classes + 1)

Loss: soft Dice (per image, foreground classes) + cross-entropy. ``classes=1`` is
binary (sigmoid); ``classes=K > 1`` is K foreground classes plus background (softmax).
``frozen_levels`` freezes the stem and the first levels of the encoder (0: fine-tune
everything; ``depth``: a frozen encoder, only the decoder learns).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from medzoo.errors import ConfigError, DataError
from medzoo.models.base import AutoencoderModel
from medzoo.models.mask_cleanup import largest_region as largest_region_of
from medzoo.models.residual import BilinearUpsample2x, _norm, residual_block

_SMOOTH = 1.0  # Laplace smoothing of the soft Dice: an empty mask predicted empty scores ~1


def check_masks(masks, images=None, classes: int = 1) -> np.ndarray:
    """Masks as uint8 class indices (N, H, W), refusing what would silently misalign or mislabel.

    Binary masks may hold 0/1, 0/255 or booleans; ``classes > 1`` masks hold 0..classes.
    With ``images`` (N, H, W[, C]) the masks must match them in count, height and width.
    """
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise DataError(f"masks must have shape (N, H, W) or (N, H, W, 1), got {masks.shape}")
    if images is not None:
        images = np.asarray(images)
        if len(images) != len(masks) or tuple(images.shape[1:3]) != tuple(masks.shape[1:3]):
            raise DataError(f"masks of shape {masks.shape} do not match images of shape {images.shape}: each mask "
                            "must have its image's height and width (resize both the same way)")
    if masks.dtype == bool:
        return masks.astype(np.uint8)
    if not np.issubdtype(masks.dtype, np.number):
        raise DataError(f"masks must be numeric or boolean, got dtype {masks.dtype}")
    values = np.unique(masks)
    if classes == 1:
        if set(values.tolist()) <= {0, 255} and 255 in values:
            return (masks == 255).astype(np.uint8)
        if not set(values.tolist()) <= {0, 1}:
            raise DataError(f"binary masks must hold 0/1 or 0/255, found values {values[:10].tolist()}")
        return masks.astype(np.uint8)
    bad = values[(values < 0) | (values > classes) | (values != np.round(values))]
    if bad.size:
        raise DataError(f"masks hold labels {bad[:10].tolist()}, but the model has classes 0..{classes} "
                        f"(0 = background)")
    return masks.astype(np.uint8)


def build_unet_decoder(channels: int, encoder_filters, decoder_filters, outputs: int, *, normalization: str,
                       activation: str, name: str = "decoder") -> keras.Model:
    """``[image, features_0, ..., features_{L-1}]`` -> logits (N, H, W, outputs) at the image's resolution."""
    act = dict(normalization=normalization, activation=activation)
    image = keras.Input(shape=(None, None, channels), name="image")
    feats = [keras.Input(shape=(None, None, f), name=f"level{i}") for i, f in enumerate(encoder_filters)]
    levels = len(encoder_filters)
    x = residual_block(feats[-1], decoder_filters[-1], **act, name=f"dec{levels - 1}_block")
    for i in reversed(range(levels - 1)):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"dec{i}_upsample")(x)
        x = keras.layers.Conv2D(decoder_filters[i], 3, padding="same", name=f"dec{i}_conv")(x)
        x = keras.layers.Concatenate(name=f"dec{i}_skip")([x, feats[i]])
        x = residual_block(x, decoder_filters[i], **act, name=f"dec{i}_block")
    # the encoder's first level sits at H/2 (its stem folds 2x2 patches): one more step up,
    # with a thin full-resolution view of the image for sharp boundaries
    x = BilinearUpsample2x(name="full_upsample")(x)
    view = keras.layers.Conv2D(decoder_filters[0] // 2, 3, padding="same", name="full_image_conv")(image)
    x = keras.layers.Concatenate(name="full_skip")([x, view])
    x = residual_block(x, decoder_filters[0] // 2, **act, name="full_block")
    x = _norm(normalization, decoder_filters[0] // 2, "out_norm")(x)
    x = keras.layers.Activation(activation, name="out_act")(x)
    logits = keras.layers.Conv2D(outputs, 1, dtype="float32", name="logits")(x)
    return keras.Model([image, *feats], logits, name=name)


@keras.saving.register_keras_serializable(package="medzoo")
class Segmenter(AutoencoderModel):
    """Masks from images: a zoo encoder's features and a U-Net-style decoder.

    Args:
        classes: foreground classes (1: binary, a sigmoid map; K > 1: softmax over K + 1).
        decoder_filters: channels per decoder level (default: half the encoder's, at least 16).
        frozen_levels: encoder levels kept frozen, stem included (0 .. depth).
        dice_weight: weight of the soft Dice term beside the cross-entropy.
        encoder_source: where the encoder's weights came from (a zoo name; provenance only).
        **kwargs: the encoder's architecture (``filters``, ``depth``, ``blocks_per_level``,
            ``normalization``, ``activation``, ``input_shape``); residual only.

    Example:
        >>> seg = Segmenter.from_pretrained(medzoo.load("vae-breastus-f8c4"), frozen_levels=1)
        >>> seg.fit(images, masks, epochs=20)         # images in [0, 1], masks 0/1 (N, H, W)
        >>> labels = seg.segment(images)              # (N, H, W) uint8
    """

    metric_names = ("loss", "dice_loss", "ce_loss", "dice")

    def __init__(self, classes=1, decoder_filters=None, frozen_levels=0, dice_weight=1.0, encoder_source=None,
                 **kwargs):
        kwargs.setdefault("architecture", "residual")
        kwargs.setdefault("input_shape", (None, None, 1))
        if kwargs["architecture"] != "residual":
            raise ConfigError("a Segmenter is built on the any-size residual encoder (architecture='residual')")
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ConfigError(f"classes must be a positive integer (foreground classes), got {classes!r}")
        kwargs.pop("attention", None)  # the features stop before the encoder's mid-block
        kwargs["output_activation"] = "sigmoid"
        kwargs["reconstruction_loss"] = "bce"
        self.classes = classes
        self._decoder_filters_arg = None if decoder_filters is None else [int(f) for f in decoder_filters]
        self.frozen_levels = int(frozen_levels)
        self.dice_weight = float(dice_weight)
        self.encoder_source = encoder_source
        super().__init__(**kwargs)
        if not 0 <= self.frozen_levels <= self.depth:
            raise ConfigError(f"frozen_levels must be 0..{self.depth} (the encoder's levels), got {frozen_levels}")
        self.freeze(self.frozen_levels)

    # ----------------------------------------------------------------- network
    @property
    def decoder_filters(self) -> list[int]:
        if self._decoder_filters_arg is not None:
            if len(self._decoder_filters_arg) != self.depth:
                raise ConfigError(f"decoder_filters needs one count per encoder level ({self.depth}), "
                                  f"got {self._decoder_filters_arg}")
            return self._decoder_filters_arg
        return [max(16, f // 2) for f in self.filters_per_level]

    @property
    def outputs(self) -> int:
        return 1 if self.classes == 1 else self.classes + 1

    def feature_layer_names(self) -> list[str]:
        """The encoder layers whose outputs are the per-level features."""
        return [f"down{i}_block{self.blocks_per_level - 1}_add" for i in range(self.depth)]

    def _build_networks(self):
        full = self._make_encoder(latent_channels=1)
        self.encoder = keras.Model(full.input, [full.get_layer(n).output for n in self.feature_layer_names()],
                                   name="encoder")
        self.decoder = build_unet_decoder(self.image_shape[-1], self.filters_per_level, self.decoder_filters,
                                          self.outputs, normalization=self.normalization,
                                          activation=self.activation)

    def freeze(self, levels: int) -> None:
        """Freeze the stem and the first ``levels`` encoder levels; the rest (and the decoder) train."""
        self.frozen_levels = int(levels)
        for layer in self.encoder.layers:
            if layer.name.startswith("stem"):
                layer.trainable = levels == 0
            elif layer.name.startswith("down"):
                layer.trainable = int(layer.name[4:].split("_")[0]) >= levels

    def load_encoder_weights(self, model) -> int:
        """Copy the encoder weights of a zoo model of the same architecture; returns the layers copied."""
        source = getattr(model, "encoder", None)
        if source is None or getattr(model, "architecture", None) != "residual":
            raise ConfigError(f"{type(model).__name__} has no any-size residual encoder to copy")
        copied = 0
        for layer in self.encoder.layers:
            if not layer.weights:
                continue
            try:
                theirs = source.get_layer(layer.name)
            except ValueError as exc:
                raise ConfigError(f"the source encoder has no layer {layer.name!r}: another architecture") from exc
            try:
                layer.set_weights(theirs.get_weights())
            except ValueError as exc:
                raise ConfigError(f"layer {layer.name!r}: {exc} (filters, depth or blocks differ)") from exc
            copied += 1
        return copied

    @classmethod
    def from_pretrained(cls, model, *, classes=1, frozen_levels=0, decoder_filters=None, seed=None, **kwargs):
        """A Segmenter whose encoder is a trained model's (e.g. ``medzoo.load("vae-breastus-f8c4")``).

        The new model keeps the source's preprocessing spec and training resolution, so it
        takes the same inputs; its config records the source's zoo name.
        """
        name = (getattr(model, "zoo_metadata", None) or {}).get("name")
        arch = {k: model.get_config()[k] for k in ("filters", "depth", "normalization", "activation")}
        seg = cls(classes=classes, frozen_levels=frozen_levels, decoder_filters=decoder_filters, seed=seed,
                  input_shape=list(model.image_shape), blocks_per_level=model.blocks_per_level,
                  encoder_source=name or getattr(model, "name", None), **arch, **kwargs)
        seg.load_encoder_weights(model)
        seg.preprocess_spec = getattr(model, "preprocess_spec", None)
        seg.training_resolution = getattr(model, "training_resolution", None)
        seg.domain_profile = getattr(model, "domain_profile", None)
        return seg

    def get_config(self):
        config = super().get_config()
        for key in ("output_activation", "reconstruction_loss", "attention", "ssim_weight"):
            config.pop(key, None)
        config.update(classes=self.classes, decoder_filters=self._decoder_filters_arg,
                      frozen_levels=self.frozen_levels, dice_weight=self.dice_weight,
                      encoder_source=self.encoder_source)
        return config

    # ---------------------------------------------------------------- forward
    def logits_tensor(self, x, training=False):
        padded = self.pad_to_stride(x)
        features = self.encoder(padded, training=training)
        return self.crop_like(self.decoder([padded, *features], training=training), x)

    def probabilities(self, logits):
        logits = ops.cast(logits, "float32")
        return ops.sigmoid(logits) if self.classes == 1 else ops.softmax(logits, axis=-1)

    def encode_tensor(self, x):
        """The deepest feature map (N, H/f, W/f, filters[-1])."""
        return self.encoder(self.pad_to_stride(x), training=False)[-1]

    def decode_tensor(self, z):
        raise NotImplementedError("a Segmenter decodes features into masks with the image beside them: use segment()")

    def reconstruct_tensor(self, inputs, training=None):
        """Images -> class probabilities (N, H, W, 1 or classes + 1)."""
        return self.probabilities(self.logits_tensor(inputs, training=bool(training)))

    def forward_terms(self, x, training):
        return {"logits": self.logits_tensor(ops.cast(x, self.compute_dtype), training=training)}

    @staticmethod
    def _target(x, y):
        if y is None:
            raise DataError("a Segmenter trains on (images, masks); no masks were given")
        return y

    def losses_from(self, target, terms):
        logits = ops.cast(terms["logits"], "float32")
        target = ops.cast(target, "float32")
        if len(target.shape) == 3:
            target = target[..., None]
        if self.classes == 1:
            prob = ops.sigmoid(logits)
            truth = target
            ce = ops.mean(ops.binary_crossentropy(truth, logits, from_logits=True))
            hard_pred = ops.cast(prob > 0.5, "float32")
        else:
            prob = ops.softmax(logits, axis=-1)
            truth = ops.one_hot(ops.cast(target[..., 0], "int32"), self.outputs)
            ce = ops.mean(ops.categorical_crossentropy(truth, logits, from_logits=True))
            hard_pred = ops.one_hot(ops.argmax(prob, axis=-1), self.outputs)[..., 1:]
            prob, truth = prob[..., 1:], truth[..., 1:]  # Dice over the foreground classes
        inter = ops.sum(prob * truth, axis=(1, 2))
        soft = (2.0 * inter + _SMOOTH) / (ops.sum(prob, axis=(1, 2)) + ops.sum(truth, axis=(1, 2)) + _SMOOTH)
        hard_inter = ops.sum(hard_pred * truth, axis=(1, 2))
        hard_sum = ops.sum(hard_pred, axis=(1, 2)) + ops.sum(truth, axis=(1, 2))
        hard = ops.where(hard_sum > 0, 2.0 * hard_inter / ops.maximum(hard_sum, 1.0), 1.0)
        dice_loss = 1.0 - ops.mean(soft)
        return {"loss": ce + self.dice_weight * dice_loss, "dice_loss": dice_loss, "ce_loss": ce,
                "dice": ops.mean(hard)}

    # ------------------------------------------------------ numpy-facing API
    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit``; numpy masks given as ``y`` are checked against the images first."""
        if isinstance(x, np.ndarray) and y is not None:
            y = check_masks(y, x, self.classes)[..., None]
        validation = kwargs.get("validation_data")
        if isinstance(validation, tuple) and len(validation) == 2 and isinstance(validation[0], np.ndarray):
            kwargs["validation_data"] = (validation[0], check_masks(validation[1], validation[0],
                                                                    self.classes)[..., None])
        return super().fit(x, y, *args, **kwargs)

    def predict_proba(self, x, batch_size=16, preprocess=False, tile_size="auto", overlap=None) -> np.ndarray:
        """Images -> class probabilities (N, H, W, 1) for binary models, (N, H, W, classes + 1) otherwise."""
        return self.reconstruct(x, batch_size=batch_size, preprocess=preprocess, tile_size=tile_size,
                                overlap=overlap)

    def segment(self, x, threshold=0.5, largest_region=False, **kwargs) -> np.ndarray:
        """Images -> class indices (N, H, W) uint8 (binary: probability above ``threshold``).

        ``largest_region``: keep each class's largest connected region, holes filled (for
        one object per image, e.g. a fetal head: stray blobs no longer bend a fitted ellipse).
        """
        prob = self.predict_proba(x, **kwargs)
        if self.classes == 1:
            labels = (prob[..., 0] > threshold).astype(np.uint8)
        else:
            labels = np.argmax(prob, axis=-1).astype(np.uint8)
        return largest_region_of(labels, self.classes) if largest_region else labels
