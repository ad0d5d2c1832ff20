"""What every medzoo model shares: config, training loop, metrics and the encode/decode API.

Subclasses implement four things: ``_build_networks`` (create sub-layers from the
config), ``forward_terms`` (the training forward pass, a dict of tensors),
``losses_from`` (a dict of scalars whose ``"loss"`` entry is minimised) and
``encode_tensor`` / ``decode_tensor`` (tensor versions of the public numpy methods),
all in ``keras.ops``. This base class turns them into a ``compute_loss`` that Keras'
own training step of every backend (TensorFlow, JAX, PyTorch) uses, under any
``tf.distribute`` strategy and with mixed precision, a
``compile()`` with a sensible default optimizer, and batched ``encode`` /
``decode`` / ``reconstruct`` that take and return numpy arrays.

Two architectures (``architecture=``): ``"conv"``, the fixed-size plain
convolutional networks of :mod:`medzoo.models.blocks`, and ``"residual"``, the
any-size residual networks of :mod:`medzoo.models.residual`. A residual model takes
``(N, H, W, C)`` for any ``H, W >= f`` (``f = 2**depth``): it reflect-pads the bottom
and right edges up to a multiple of ``f``, so ``encode`` gives ``ceil(H/f) x ceil(W/f)``
latents, and crops its reconstruction back to ``H x W``. Images too large for one pass
go through overlapping, blended tiles (:mod:`medzoo.models.tiling`).

Data given to ``fit``/``evaluate`` may be ``x``, ``(x,)`` or ``(x, y)``: when ``y``
has the rank of ``x`` it is the reconstruction target (e.g. clean images for noisy
inputs); otherwise (class labels from a labelled dataset) it is ignored.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings

import numpy as np
import keras
from keras import ops

from medzoo.errors import ConfigError, DataError, DomainShiftWarning
from medzoo.models import tiling
from medzoo.models.execution import compiled
from medzoo.models.blocks import NORMALIZATIONS, build_decoder, build_encoder, check_input_shape, resolve_filters
from medzoo.models.losses import ssim_per_image
from medzoo.models.residual import build_residual_decoder, build_residual_encoder, check_residual_depth

RECONSTRUCTION_LOSSES = ("mse", "l1", "bce")
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")
ARCHITECTURES = ("conv", "residual")
#: normalisation and activation when the config names none, per architecture
_DEFAULTS = {"conv": ("batch", "relu"), "residual": ("group", "silu")}


def check_any_size_shape(input_shape, depth) -> tuple[None, None, int]:
    """Validate the ``(H, W, C)`` of an any-size model: H and W are ``None``, C is 1 or 3."""
    try:
        h, w, c = input_shape
        c = int(c)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"input_shape must be (None, None, C), got {input_shape!r}") from exc
    if c not in (1, 3):
        raise ConfigError(f"input_shape must have 1 or 3 channels, got {c}")
    if h is not None or w is not None:
        raise ConfigError(
            f"the residual architecture takes images of any size: give input_shape=(None, None, {c}), "
            f"not {tuple(input_shape)!r} (any H, W >= {2**depth} then work)"
        )
    return None, None, c


def reconstruction_error(target, logits, loss: str, output_activation: str):
    """Per-pixel reconstruction error, shape of ``target`` (float32).

    ``bce`` is the Bernoulli negative log-likelihood computed from logits, so it is
    stable near 0 and 1; it needs targets in [0, 1] and a sigmoid output.
    """
    target = ops.cast(target, "float32")
    logits = ops.cast(logits, "float32")
    if loss == "bce":
        return ops.binary_crossentropy(target, logits, from_logits=True)
    pred = ops.sigmoid(logits) if output_activation == "sigmoid" else logits
    if loss == "mse":
        return ops.square(target - pred)
    return ops.abs(target - pred)


#: ids of the models whose train_step / test_step runs in this thread (see AutoencoderModel.call)
_IN_STEP = threading.local()


def _multi_worker(strategy) -> bool:
    """Whether ``strategy`` is tf.distribute's multi-worker strategy (told by class name: no TF import here)."""
    names = {cls.__name__ for cls in type(strategy).__mro__}
    return bool(names & {"CollectiveAllReduceStrategy", "MultiWorkerMirroredStrategy"})


class AutoencoderModel(keras.Model):
    """Base class of the medzoo families (not used directly).

    Args:
        input_shape: ``(H, W, C)``; C is 1 or 3. ``"conv"``: H, W are multiples of
            ``2**depth``; ``"residual"``: ``(None, None, C)``, any size.
        filters: base filter count, doubled at each level, or one count per level.
        depth: number of down-sampling levels (each halves H and W); the latent is
            ``f = 2**depth`` times smaller per side (residual: f in 2, 4, 8, 16).
        normalization: ``"batch"``, ``"group"``, ``"layer"`` or ``"none"`` (default:
            batch for conv, group for residual, which refuses batch).
        activation: any Keras activation name (default: relu for conv, silu for residual).
        output_activation: ``"sigmoid"`` (images in [0, 1]) or ``"linear"``.
        reconstruction_loss: ``"mse"``, ``"l1"`` or ``"bce"``.
        seed: seed of the model's random generator (noise, sampling, code restarts).
        architecture: ``"conv"`` (fixed size) or ``"residual"`` (any size; see the module docstring).
        blocks_per_level: residual blocks per level (residual only).
        attention: a self-attention block at the lowest resolution (residual only).
        ssim_weight: adds ``ssim_weight * (1 - SSIM)`` per pixel to the reconstruction
            error (11x11 Gaussian window), a term that rewards kept structure over mean error.
    """

    #: names of the scalars ``compute_losses`` returns, tracked as epoch means
    metric_names: tuple[str, ...] = ("loss", "reconstruction_loss")

    #: the input contract of a pretrained model: a ``medzoo.data.PreprocessSpec``
    #: that the zoo attaches (anything with ``apply`` and ``check``); None for a bare model
    preprocess_spec = None

    #: any-size models from the zoo: ``{"image_side": [min, max], "pixel_spacing_mm": ...}``
    #: of their training images; inputs far outside get a warning (a domain shift, not an error)
    training_resolution = None
    #: how far outside the training sides an input may be before the warning
    resolution_tolerance = 4.0
    #: zoo models: a :class:`~medzoo.models.domain.DomainProfile` of their training images' intensity and
    #: texture statistics; images far from it (another modality) get a warning
    domain_profile = None

    def __init__(
        self,
        input_shape=(128, 128, 1),
        filters=32,
        depth=4,
        normalization=None,
        activation=None,
        output_activation="sigmoid",
        reconstruction_loss="mse",
        seed=None,
        architecture="conv",
        blocks_per_level=1,
        attention=False,
        ssim_weight=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        normalization = _DEFAULTS[architecture][0] if normalization is None else normalization
        activation = _DEFAULTS[architecture][1] if activation is None else activation
        if architecture == "residual" and normalization == "batch":
            raise ConfigError('the residual architecture takes normalization "group", "layer" or "none": batch '
                              "statistics of small crops do not carry over to whole images of other sizes")
        if architecture == "conv" and (blocks_per_level != 1 or attention):
            raise ConfigError("blocks_per_level and attention belong to architecture='residual'")
        if int(blocks_per_level) < 1 or float(ssim_weight) < 0:
            raise ConfigError("blocks_per_level must be >= 1 and ssim_weight >= 0")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ConfigError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ConfigError(
                f"reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}, got {reconstruction_loss!r}"
            )
        if reconstruction_loss == "bce" and output_activation != "sigmoid":
            raise ConfigError("reconstruction_loss='bce' needs output_activation='sigmoid'")
        self.filters_per_level = resolve_filters(filters, depth)
        self.depth = len(self.filters_per_level)
        self.architecture = architecture
        self.blocks_per_level = int(blocks_per_level)
        self.attention = bool(attention)
        self.ssim_weight = float(ssim_weight)
        if architecture == "residual":
            check_residual_depth(self.depth)
            self.image_shape = check_any_size_shape(input_shape, self.depth)
        else:
            self.image_shape = check_input_shape(input_shape, self.depth)
        self._filters_arg = filters if isinstance(filters, int) else list(self.filters_per_level)
        self.normalization = normalization
        self.activation = activation
        self.output_activation = output_activation
        self.reconstruction_loss = reconstruction_loss
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        # Keras tracks the total "loss" itself; these are the other terms, reset every epoch
        self.trackers = {n: keras.metrics.Mean(name=n) for n in self.metric_names if n != "loss"}
        self._tensor_fns = {}
        self._build_networks()
        self.build((None, *self.image_shape))

    # ----------------------------------------------------------------- config
    @property
    def any_size(self) -> bool:
        """Whether the model takes images of any size (the residual architecture)."""
        return self.architecture == "residual"

    @property
    def downsample_factor(self) -> int:
        """``f``: the latent is ``f`` times smaller than the image per side."""
        return 2**self.depth

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the latent of an ``height x width`` image."""
        f = self.downsample_factor
        return math.ceil(height / f), math.ceil(width / f)

    def _architecture_kwargs(self):
        return dict(
            filters=self.filters_per_level,
            normalization=self.normalization,
            activation=self.activation,
        )

    def _make_encoder(self, *, latent_channels=None, latent_dim=None, heads=1):
        """The encoder of the configured architecture (the residual one has spatial latents only)."""
        if self.architecture == "conv":
            return build_encoder(self.image_shape, **self._architecture_kwargs(), latent_channels=latent_channels,
                                 latent_dim=latent_dim, heads=heads)
        if latent_dim is not None:
            raise ConfigError("the residual architecture has spatial latents: give latent_channels, not latent_dim")
        return build_residual_encoder(self.image_shape[-1], **self._architecture_kwargs(), heads=heads,
                                      latent_channels=latent_channels, blocks_per_level=self.blocks_per_level,
                                      attention=self.attention)

    def _make_decoder(self, *, latent_channels=None, latent_dim=None):
        if self.architecture == "conv":
            return build_decoder(self.image_shape, **self._architecture_kwargs(), latent_channels=latent_channels,
                                 latent_dim=latent_dim)
        return build_residual_decoder(self.image_shape[-1], **self._architecture_kwargs(),
                                      latent_channels=latent_channels, blocks_per_level=self.blocks_per_level,
                                      attention=self.attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_shape=list(self.image_shape),
            filters=self._filters_arg,
            depth=self.depth,
            normalization=self.normalization,
            activation=self.activation,
            output_activation=self.output_activation,
            reconstruction_loss=self.reconstruction_loss,
            seed=self.seed,
        )
        if self.architecture != "conv" or self.ssim_weight:  # the configs of conv presets stay as they were
            config.update(architecture=self.architecture, blocks_per_level=self.blocks_per_level,
                          attention=self.attention, ssim_weight=self.ssim_weight)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def build(self, input_shape=None):
        """All weights exist from the config alone (sub-networks are built at creation)."""
        self.built = True

    # --------------------------------------------------------- subclass hooks
    def _build_networks(self):
        raise NotImplementedError

    def encode_tensor(self, x):
        raise NotImplementedError

    def decode_tensor(self, z):
        raise NotImplementedError

    def forward_terms(self, x, training):
        """The training forward pass: a dict of the tensors :meth:`losses_from` needs (graph-safe)."""
        raise NotImplementedError

    def losses_from(self, target, terms):
        """``{"loss": ..., other metric names: ...}`` from ``forward_terms`` output and the target images."""
        raise NotImplementedError

    def reconstruct_tensor(self, inputs, training=None):
        """Images -> reconstructions (tensors), without noise or sampling unless ``training``."""
        return self.crop_like(self.decode_tensor(self.encode_tensor(inputs)), inputs)

    def call(self, inputs, training=None):
        """Reconstruct ``inputs`` (so ``model(x)`` and ``model.predict(x)`` give images).

        Inside ``train_step`` / ``test_step`` it returns :meth:`forward_terms` instead.
        """
        if self._loss_terms_mode:
            return self.forward_terms(inputs, training)
        return self.reconstruct_tensor(inputs, training=training)

    # ---------------------------------------------------------- shared pieces
    def pad_to_stride(self, x):
        """Reflect-pad the bottom and right edges of ``x`` up to a multiple of ``f`` (any-size models only).

        Reflection (mirroring about the edge pixel, without repeating it) continues the
        image's texture instead of adding a flat band or a hard edge the model never saw.
        """
        if not self.any_size:
            return x
        f = self.downsample_factor
        shape = ops.shape(x)
        pad_h, pad_w = (-shape[1]) % f, (-shape[2]) % f
        if keras.backend.backend() == "torch":
            # Keras' torch pad drops the channel axis' zero pad and then refuses a 4-D reflect;
            # shapes are concrete there, so mirror the edge rows and columns by hand
            if pad_h:
                x = ops.concatenate([x, ops.flip(x[:, -pad_h - 1:-1], axis=1)], axis=1)
            if pad_w:
                x = ops.concatenate([x, ops.flip(x[:, :, -pad_w - 1:-1], axis=2)], axis=2)
            return x
        return ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="reflect")

    def crop_like(self, y, reference):
        """Crop ``y`` to the height and width of ``reference`` (undoes :meth:`pad_to_stride`)."""
        if not self.any_size:
            return y
        shape = ops.shape(reference)
        return y[:, : shape[1], : shape[2], :]

    def activate(self, logits):
        """Decoder logits -> images in the output range."""
        logits = ops.cast(logits, "float32")
        return ops.sigmoid(logits) if self.output_activation == "sigmoid" else logits

    def pixel_errors(self, target, logits):
        """Per-pixel reconstruction error (``reconstruction_loss``, plus the SSIM term), float32."""
        errors = reconstruction_error(target, logits, self.reconstruction_loss, self.output_activation)
        if self.ssim_weight:
            structural = 1.0 - ssim_per_image(ops.cast(target, "float32"), self.activate(logits))
            errors = errors + self.ssim_weight * structural[:, None, None, None]
        return errors

    # ------------------------------------------------------------- training
    # Keras' own train_step / test_step of each backend run the optimisation; the model
    # supplies compute_loss. Inside those steps (a flag read while the step is traced)
    # call() returns forward_terms(), the tensors the loss needs, so the forward pass
    # runs once; everywhere else it returns images. Under JAX, the trainer's stateless
    # call carries the variable updates made in the forward pass (EMA codebook, seeds)
    # and the metric updates made in compute_loss.
    @property
    def _loss_terms_mode(self) -> bool:
        return id(self) in getattr(_IN_STEP, "models", ())

    @contextlib.contextmanager
    def _returning_loss_terms(self):
        # thread-local: tf.distribute runs one step per replica in threads of its own
        active = _IN_STEP.__dict__.setdefault("models", set())
        fresh = id(self) not in active
        active.add(id(self))
        try:
            yield
        finally:
            if fresh:
                active.discard(id(self))

    def train_step(self, *args, **kwargs):
        with self._returning_loss_terms():
            return super().train_step(*args, **kwargs)

    def test_step(self, *args, **kwargs):
        with self._returning_loss_terms():
            return super().test_step(*args, **kwargs)

    @staticmethod
    def _target(x, y):
        """``y`` when it is an image batch (e.g. clean images for noisy inputs), else ``x`` (labels are ignored)."""
        if y is not None and getattr(y, "shape", None) is not None and len(y.shape) == len(x.shape):
            return y
        return x

    def compute_losses(self, x, target, training):
        """``{"loss": ..., other metric names: ...}`` for one batch: the forward pass and its loss terms."""
        return self.losses_from(target, self.forward_terms(x, training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The model's own loss for Keras' train/test steps; also updates the per-term metrics."""
        if not isinstance(y_pred, dict):  # called outside our steps: run the forward pass here
            y_pred = self.forward_terms(x, training)
        values = self.losses_from(self._target(x, y), y_pred)
        loss = values["loss"]
        for extra in self.losses:  # e.g. kernel regularizers a user added
            loss = loss + ops.cast(extra, "float32")
        batch = ops.shape(x)[0]
        for name, tracker in self.trackers.items():
            tracker.update_state(values[name], sample_weight=batch)
        # under tf.distribute gradients are summed over replicas: each contributes loss / replicas
        return loss / self._replicas()

    def _replicas(self) -> int:
        strategy = getattr(self, "distribute_strategy", None) if keras.backend.backend() == "tensorflow" else None
        return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logs = self.get_metrics_result()
        if keras.backend.backend() == "tensorflow" and _multi_worker(getattr(self, "distribute_strategy", None)):
            # Keras 3 reduces multi-worker step outputs with reduce(MEAN, axis=0), which
            # fails on scalars; shape (1,) reduces to the same scalar
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Compile with Adam(1e-3) unless told otherwise; the loss is the model's own.

        ``loss`` exists only to fail clearly: medzoo models compute their loss
        themselves; choose it with ``reconstruction_loss`` in the model config.
        """
        if loss is not None:
            raise ConfigError(
                "medzoo models compute their own loss; set reconstruction_loss= "
                f"({', '.join(RECONSTRUCTION_LOSSES)}) when creating the model instead of compile(loss=...)"
            )
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        # XLA is what makes JAX fast (op-by-op JAX dispatch is ~100x slower on a GPU);
        # TensorFlow stays eager-graph, where XLA compiles slowly on CPUs for no gain.
        kwargs.setdefault("jit_compile", False if keras.backend.backend() == "tensorflow" else "auto")
        super().compile(optimizer=optimizer, **kwargs)

    def get_compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": keras.optimizers.serialize(self.optimizer)}

    def compile_from_config(self, config):
        """Restore the optimizer saved in a ``.keras`` file (the loss is the model's own)."""
        self.compile(optimizer=keras.optimizers.deserialize(config["optimizer"]))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _ensure_compiled(self):
        if not self.compiled:
            self.compile()

    def fit(self, *args, **kwargs):
        """``keras.Model.fit``; compiles with the default optimizer first if needed."""
        self._ensure_compiled()
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        self._ensure_compiled()
        return super().evaluate(*args, **kwargs)

    # ------------------------------------------------------- numpy-facing API
    def preprocess(self, images) -> np.ndarray:
        """Raw images (any size, range, 1 or 3 channels) -> model inputs, with the model's spec."""
        if self.preprocess_spec is None:
            raise ConfigError(
                "this model carries no preprocessing spec; load it from the zoo (medzoo.load) "
                "or set model.preprocess_spec = medzoo.data.PreprocessSpec(...)"
            )
        return np.asarray(self.preprocess_spec.apply(images))

    #: ``tile_size="auto"`` tiles images of more pixels than this (any-size models)
    auto_tile_pixels = 1024 * 1024
    #: tile size and overlap of ``tile_size="auto"``, in image pixels
    default_tile = (512, 64)

    def _check_images(self, x, preprocess=False) -> np.ndarray:
        """Validate (or, with ``preprocess=True``, convert) images against the model's input contract."""
        if preprocess:
            x = self.preprocess(x)
        elif self.preprocess_spec is not None:
            self.preprocess_spec.check(x)  # refuses un-normalised or wrongly sized input
        x = np.asarray(x)
        if x.ndim == len(self.image_shape):
            x = x[None]
        if self.any_size:
            channels, f = self.image_shape[-1], self.downsample_factor
            if x.ndim != 4 or x.shape[-1] != channels:
                raise DataError(f"expected images of shape (N, H, W, {channels}) (any H, W >= {f}), got {x.shape}")
            if x.shape[1] < f or x.shape[2] < f:
                raise DataError(f"images of {x.shape[1]}x{x.shape[2]} pixels are smaller than the model's "
                                f"downsampling factor {f}; this model takes any H, W >= {f}")
        elif x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise DataError(
                f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {x.shape}; "
                "preprocess them with the model's PreprocessSpec first"
            )
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"images must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise DataError("images contain NaN or infinite values")
        self._warn_if_unfamiliar_size(x.shape[1], x.shape[2])
        self._warn_if_unfamiliar_images(x)
        return x

    def check_images(self, x) -> np.ndarray:
        """Validate images already through the model's spec, warning (DomainShiftWarning) as :meth:`encode` would
        when their size or statistics are far from the training images'; returns them as float32 (N, H, W, C).

        For a caller that feeds the model something derived from the images (a codec's reduced copy): the
        check belongs to the images the user gave, not to what the caller makes of them.
        """
        return self._check_images(x)

    def _warn_if_unfamiliar_images(self, x) -> None:
        """Warn when the images' intensity and texture statistics lie far from the training images'."""
        from medzoo.models.domain import WARN_SHARE

        if self.domain_profile is None or min(x.shape[1:3]) < 16:
            return
        flagged = int(self.domain_profile.unfamiliar(x).sum())
        if flagged and flagged > WARN_SHARE * len(x):
            trained = self.domain_profile.fitted_on or "its training images"
            warnings.warn(
                f"{flagged} of {len(x)} image(s) look unlike this model's training data ({trained}) in their "
                "intensity and texture statistics: another modality or acquisition? Expect a domain shift "
                "(it still runs; fine-tune on such images, or pick a model trained on them)",
                DomainShiftWarning, stacklevel=3)

    def _warn_if_unfamiliar_size(self, height, width) -> None:
        """Warn when an any-size model meets images far smaller or larger than its training images."""
        seen = (self.training_resolution or {}).get("image_side")
        if not self.any_size or not seen:
            return
        low, high = seen
        scales = (self.training_resolution or {}).get("scales") or {}
        low = min(low, scales.get("min_side") or low)  # crops at random scales: anatomy as small as min_side
        tol = self.resolution_tolerance
        if max(height, width) > high * tol or min(height, width) < low / tol:
            spacing = (self.training_resolution or {}).get("pixel_spacing_mm")
            where = f" at {spacing} mm per pixel" if spacing else ""
            where += " (and crops of them at random scales)" if scales else ""
            warnings.warn(
                f"this model was trained on images with sides of {low}-{high} pixels{where}; these are "
                f"{height}x{width}, so anatomy appears at another scale than in training: expect a domain "
                "shift (it still runs; a PreprocessSpec with max_side= shrinks large images, or fine-tune)",
                DomainShiftWarning, stacklevel=3)

    def _tiles(self, height, width, tile_size, overlap):
        """``(tile, overlap)`` in image pixels, or None to process whole images."""
        if tile_size is None:
            return None
        if not self.any_size:
            if tile_size == "auto":
                return None
            raise ConfigError("tiled inference needs an any-size model (architecture='residual'); "
                              f"this {self.architecture} model takes exactly {self.image_shape[:2]}")
        if tile_size == "auto":
            if height * width <= self.auto_tile_pixels:
                return None
            tile_size = self.default_tile[0]
        overlap = self.default_tile[1] if overlap is None else overlap
        return tiling.check_tiling(tile_size, overlap, self.downsample_factor)

    def _batched(self, key, fn, x, batch_size):
        """Run a tensor function over ``x`` in batches; compiled once per ``key`` for the backend."""
        if key not in self._tensor_fns:
            self._tensor_fns[key] = compiled(self, fn)
        run = self._tensor_fns[key]
        return np.concatenate([run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)], axis=0)

    def _maybe_tiled(self, key, fn, x, batch_size, tiles, scale, output_size=None, per_tile=None):
        """``_batched``, over overlapping blended tiles when ``tiles`` is ``(tile, overlap)``; ``per_tile(out, t)``
        adjusts each batch of tile outputs before they are blended."""
        if tiles is None:
            return self._batched(key, fn, x, batch_size)
        tile, overlap = tiles
        per_call = tiling.tiles_per_call(tile, batch_size)

        def apply(t):
            out = self._batched(key, fn, t, per_call)
            return out if per_tile is None else per_tile(out, t)

        return tiling.tiled_apply(apply, x, tile=tile, overlap=overlap, multiple=self.downsample_factor, scale=scale,
                                  output_size=output_size)

    def encode(self, x, batch_size=64, preprocess=False, tile_size="auto", overlap=None):
        """Images ``(N, H, W, C)`` -> latent codes (numpy).

        ``preprocess=True`` first normalises (and, for fixed-size models, resizes) raw
        images with the model's ``preprocess_spec``; otherwise inputs that contradict it
        are refused. Any-size models return ``(N, ceil(H/f), ceil(W/f), c)`` and encode
        images of more than ``auto_tile_pixels`` in overlapping 512 px tiles
        (``tile_size``: pixels per tile, or None for one pass; ``overlap``: pixels shared).
        """
        return self._encode_checked(self._check_images(x, preprocess), batch_size, tile_size, overlap)

    def _encode_checked(self, x, batch_size, tile_size, overlap):
        """:meth:`encode` of images already through :meth:`_check_images` (checked and warned about once)."""
        tiles = self._tiles(x.shape[1], x.shape[2], tile_size, overlap)
        return self._maybe_tiled("encode", self.encode_tensor, x, batch_size, tiles, 1 / self.downsample_factor)

    def decode(self, z, batch_size=64, tile_size="auto", overlap=None, output_size=None):
        """Latent codes -> images (numpy, in the output range).

        Any-size models give ``(N, h*f, w*f, C)``, or ``output_size=(H, W)`` cropped from
        it (the size of the image that was encoded); ``tile_size`` and ``overlap`` are
        in image pixels, as in :meth:`encode`.
        """
        z = np.asarray(z)
        if not self.any_size:
            return self._batched("decode", self.decode_tensor, z, batch_size)
        f = self.downsample_factor
        tiles = self._tiles(z.shape[1] * f, z.shape[2] * f, tile_size, overlap)
        if tiles is not None:
            per_call = tiling.tiles_per_call(tiles[0], batch_size)  # in image pixels: what the decoder makes
            tiles = (tiles[0] // f, tiles[1] // f)
            return tiling.tiled_apply(lambda t: self._batched("decode", self.decode_tensor, t, per_call), z,
                                      tile=tiles[0], overlap=tiles[1], multiple=1, scale=f, output_size=output_size)
        out = self._batched("decode", self.decode_tensor, z, batch_size)
        return out if output_size is None else out[:, : output_size[0], : output_size[1]]

    def reconstruct(self, x, batch_size=64, preprocess=False, tile_size="auto", overlap=None,
                    match_tile_means=True):
        """Images -> their reconstructions (numpy), without noise or sampling (arguments as in encode).

        Reconstructed in tiles, each tile keeps its input's mean (:func:`~medzoo.models.tiling.match_means`),
        so that tiles normalised apart do not come back as blocks of different brightness;
        ``match_tile_means=False`` gives the network's tiles as they are."""
        x = self._check_images(x, preprocess)
        tiles = self._tiles(x.shape[1], x.shape[2], tile_size, overlap)
        return self._maybe_tiled("reconstruct", lambda t: self(t, training=False), x, batch_size, tiles, 1.0,
                                 per_tile=self._keep_tile_means if match_tile_means else None)

    def _keep_tile_means(self, out, tiles):
        """Reconstructed ``tiles`` shifted to their inputs' means (:func:`~medzoo.models.tiling.match_means`), kept
        in a sigmoid model's [0, 1]."""
        if out.shape[-1] != tiles.shape[-1]:
            return out
        out = tiling.match_means(out, tiles)
        return np.clip(out, 0.0, 1.0) if self.output_activation == "sigmoid" else out

    def sample(self, n, seed=None):
        raise NotImplementedError(f"{type(self).__name__} has no generative prior to sample from")
