"""Running a model's tensor functions fast on each Keras backend, numpy in and numpy out.

``model.encode`` / ``decode`` / ``reconstruct`` call small tensor functions batch by
batch. Each backend has its own way to make that fast, and this module is the one
place that knows them:

* TensorFlow: ``tf.function`` (one graph per input signature, relaxed shapes);
* JAX: ``jax.jit`` of a stateless call, with the model's variables passed in as
  arguments (so a jitted function never bakes in stale weights) and the state of
  random seed generators written back afterwards;
* PyTorch: eager execution under ``torch.no_grad()``.

The backend's own package is imported only when that backend is the active one.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def compiled(model, fn):
    """A function ``numpy arrays -> numpy result`` that runs ``fn`` (tensors -> tensor) on the active backend.

    ``fn`` takes one tensor or several (e.g. a latent batch, times and labels).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # plain tensor code: autograph has nothing to convert (and cannot parse lambdas)
        graph_fn = tf.function(tf.autograph.experimental.do_not_convert(fn), reduce_retracing=True)
        return lambda *xs: graph_fn(*[tf.convert_to_tensor(x) for x in xs]).numpy()
    if backend == "jax":
        return _jax_compiled(model, fn)
    if backend == "torch":
        import torch

        def run(*xs):
            with torch.no_grad():
                return ops.convert_to_numpy(fn(*[ops.convert_to_tensor(x) for x in xs]))

        return run
    return lambda *xs: ops.convert_to_numpy(fn(*[ops.convert_to_tensor(x) for x in xs]))


def _jax_compiled(model, fn):
    import jax

    def stateless(values, *xs):
        with keras.StatelessScope(state_mapping=list(zip(model.variables, values))) as scope:
            out = fn(*xs)
        updates = [scope.get_current_value(v) for v in model.variables]
        return out, [u if u is not None else v for u, v in zip(updates, values)]

    jitted = jax.jit(stateless)

    def run(*xs):
        variables = model.variables
        out, new_values = jitted([v.value for v in variables], *[np.asarray(x) for x in xs])
        for variable, new in zip(variables, new_values):
            if not variable.trainable:  # e.g. seed generator states, which advance with each sample
                variable.assign(new)
        return np.asarray(out)

    return run
