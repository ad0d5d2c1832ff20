"""What every medzoo model shares: config, training loop, metrics and the encode/decode API.

Subclasses implement three things: ``_build_networks`` (create sub-layers from the
config), ``compute_losses`` (a dict of scalars whose ``"loss"`` entry is minimised)
and ``encode_tensor`` / ``decode_tensor`` (graph-safe tensor versions of the public
numpy methods). This base class turns them into ``train_step`` and ``test_step``
that work under any ``tf.distribute`` strategy and with mixed precision, a
``compile()`` with a sensible default optimizer, and batched ``encode`` /
``decode`` / ``reconstruct`` that take and return numpy arrays.

Data given to ``fit``/``evaluate`` may be ``x``, ``(x,)`` or ``(x, y)``: when ``y``
has the rank of ``x`` it is the reconstruction target (e.g. clean images for noisy
inputs); otherwise (class labels from a labelled dataset) it is ignored.
"""

from __future__ import annotations

import numpy as np
import keras
import tensorflow as tf

from medzoo.errors import ConfigError, DataError
from medzoo.models.blocks import NORMALIZATIONS, check_input_shape, resolve_filters

RECONSTRUCTION_LOSSES = ("mse", "l1", "bce")
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")


def reconstruction_error(target, logits, loss: str, output_activation: str):
    """Per-pixel reconstruction error, shape of ``target`` (float32).

    ``bce`` is the Bernoulli negative log-likelihood computed from logits, so it is
    stable near 0 and 1; it needs targets in [0, 1] and a sigmoid output.
    """
    target = tf.cast(target, tf.float32)
    logits = tf.cast(logits, tf.float32)
    if loss == "bce":
        return tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    pred = tf.sigmoid(logits) if output_activation == "sigmoid" else logits
    if loss == "mse":
        return tf.square(target - pred)
    return tf.abs(target - pred)


class AutoencoderModel(keras.Model):
    """Base class of the medzoo families (not used directly).

    Args:
        input_shape: ``(H, W, C)``; C is 1 or 3 and H, W are multiples of ``2**depth``.
        filters: base filter count, doubled at each level, or one count per level.
        depth: number of down-sampling levels (each halves H and W).
        normalization: ``"batch"``, ``"group"``, ``"layer"`` or ``"none"``.
        activation: any Keras activation name.
        output_activation: ``"sigmoid"`` (images in [0, 1]) or ``"linear"``.
        reconstruction_loss: ``"mse"``, ``"l1"`` or ``"bce"``.
        seed: seed of the model's random generator (noise, sampling, code restarts).
    """

    #: names of the scalars ``compute_losses`` returns, tracked as epoch means
    metric_names: tuple[str, ...] = ("loss", "reconstruction_loss")

    #: the input contract of a pretrained model: a ``medzoo.data.PreprocessSpec``
    #: that the zoo attaches (anything with ``apply`` and ``check``); None for a bare model
    preprocess_spec = None

    def __init__(
        self,
        input_shape=(128, 128, 1),
        filters=32,
        depth=4,
        normalization="batch",
        activation="relu",
        output_activation="sigmoid",
        reconstruction_loss="mse",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        self.image_shape = check_input_shape(input_shape, self.depth)
        self._filters_arg = filters if isinstance(filters, int) else list(self.filters_per_level)
        self.normalization = normalization
        self.activation = activation
        self.output_activation = output_activation
        self.reconstruction_loss = reconstruction_loss
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in self.metric_names}
        self._tensor_fns = {}
        self._build_networks()
        self.build((None, *self.image_shape))

    # ----------------------------------------------------------------- config
    def _architecture_kwargs(self):
        return dict(
            filters=self.filters_per_level,
            normalization=self.normalization,
            activation=self.activation,
        )

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

    def compute_losses(self, x, target, training):
        """Return ``{"loss": ..., other metric names: ...}`` for one batch (graph-safe)."""
        raise NotImplementedError

    def encode_tensor(self, x):
        raise NotImplementedError

    def decode_tensor(self, z):
        raise NotImplementedError

    def call(self, inputs, training=None):
        """Reconstruct ``inputs`` (so ``model(x)`` and ``model.predict(x)`` give images)."""
        return self.decode_tensor(self.encode_tensor(inputs))

    # ---------------------------------------------------------- shared pieces
    def activate(self, logits):
        """Decoder logits -> images in the output range."""
        logits = tf.cast(logits, tf.float32)
        return tf.sigmoid(logits) if self.output_activation == "sigmoid" else logits

    def pixel_errors(self, target, logits):
        """Per-pixel reconstruction error (``reconstruction_loss``), float32."""
        return reconstruction_error(target, logits, self.reconstruction_loss, self.output_activation)

    # ------------------------------------------------------------- training
    @staticmethod
    def _unpack(data):
        if isinstance(data, (tuple, list)):
            x = data[0]
            y = data[1] if len(data) > 1 else None
            if y is not None and getattr(y, "shape", None) is not None and len(y.shape) == len(x.shape):
                return x, y
            return x, x
        return data, data

    def _record(self, values, batch_size):
        for name, tracker in self.trackers.items():
            tracker.update_state(values[name], sample_weight=batch_size)
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 reduces multi-worker step outputs with reduce(MEAN, axis=0), which
            # fails on scalars; shape (1,) reduces to the same scalar
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def train_step(self, data):
        x, target = self._unpack(data)
        with tf.GradientTape() as tape:
            values = self.compute_losses(x, target, training=True)
            loss = values["loss"]
            if self.losses:  # e.g. kernel regularizers a user added
                loss = loss + tf.add_n([tf.cast(l, tf.float32) for l in self.losses])
                values = {**values, "loss": loss}
            # gradients are summed over replicas, so each replica contributes loss / replicas
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._record(values, tf.shape(x)[0])

    def test_step(self, data):
        x, target = self._unpack(data)
        values = self.compute_losses(x, target, training=False)
        return self._record(values, tf.shape(x)[0])

    @property
    def metrics(self):
        # listing the trackers here makes Keras reset them at each epoch
        return list(self.trackers.values())

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
        kwargs.setdefault("jit_compile", False)
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

    def _check_images(self, x, preprocess=False) -> np.ndarray:
        """Validate (or, with ``preprocess=True``, convert) images against the model's input contract."""
        if preprocess:
            x = self.preprocess(x)
        elif self.preprocess_spec is not None:
            self.preprocess_spec.check(x)  # refuses un-normalised or wrongly sized input
        x = np.asarray(x)
        if x.ndim == len(self.image_shape):
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise DataError(
                f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {x.shape}; "
                "preprocess them with the model's PreprocessSpec first"
            )
        return x.astype(np.float32, copy=False)

    def _batched(self, key, fn, x, batch_size):
        """Run a tensor function over ``x`` in batches; one traced graph per ``key``."""
        if key not in self._tensor_fns:
            # plain tensor code: autograph has nothing to convert (and cannot parse lambdas)
            self._tensor_fns[key] = tf.function(tf.autograph.experimental.do_not_convert(fn), reduce_retracing=True)
        graph_fn = self._tensor_fns[key]
        outs = [graph_fn(tf.convert_to_tensor(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate([o.numpy() for o in outs], axis=0)

    def encode(self, x, batch_size=64, preprocess=False):
        """Images ``(N, H, W, C)`` -> latent codes (numpy).

        ``preprocess=True`` first resizes and normalises raw images with the model's
        ``preprocess_spec``; otherwise inputs that contradict it are refused.
        """
        return self._batched("encode", self.encode_tensor, self._check_images(x, preprocess), batch_size)

    def decode(self, z, batch_size=64):
        """Latent codes -> images (numpy, in the output range)."""
        return self._batched("decode", self.decode_tensor, np.asarray(z), batch_size)

    def reconstruct(self, x, batch_size=64, preprocess=False):
        """Images -> their reconstructions (numpy), without noise or sampling (``preprocess`` as in encode)."""
        return self._batched("reconstruct", lambda t: self(t, training=False), self._check_images(x, preprocess),
                             batch_size)

    def sample(self, n, seed=None):
        raise NotImplementedError(f"{type(self).__name__} has no generative prior to sample from")
