"""Keras callbacks that belong with medzoo's models."""

from __future__ import annotations

import keras

from medzoo.errors import ConfigError


class KLWarmup(keras.callbacks.Callback):
    """Raise a VAE's ``beta`` linearly from ``start`` to ``target`` over ``warmup_epochs``.

    A KL weight that starts near zero lets the decoder learn to use the latent
    before the prior pulls the posterior in, the usual cure for posterior
    collapse (Bowman et al., 2016). ``beta`` is set at the start of each epoch
    and logged as ``beta``.

    Args:
        warmup_epochs: epochs to reach ``target`` (epoch ``warmup_epochs`` and later use ``target``).
        target: final beta (default: the model's configured ``beta``).
        start: beta in the first epoch.
    """

    def __init__(self, warmup_epochs=10, target=None, start=0.0):
        super().__init__()
        if warmup_epochs < 1:
            raise ConfigError("warmup_epochs must be >= 1")
        self.warmup_epochs = int(warmup_epochs)
        self.target = target
        self.start = float(start)

    def _value(self, epoch):
        target = self.model.initial_beta if self.target is None else float(self.target)
        frac = min(1.0, epoch / self.warmup_epochs)
        return self.start + frac * (target - self.start)

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self.model, "beta"):
            raise ConfigError("KLWarmup needs a model with a `beta` variable (medzoo.models.VAE)")
        self.model.beta.assign(self._value(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = float(self.model.beta.numpy())
