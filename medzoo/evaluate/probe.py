"""Linear probe: how much of the diagnosis a frozen encoder's features carry, against honest baselines.

Protocol: features of the frozen encoder (autoencoder: the flattened code; VAE:
the posterior mean; VQ-VAE: the flattened pre-quantisation encoder output),
standardised with training-split statistics; an L2-regularised logistic regression
(scikit-learn, L-BFGS) whose strength C is chosen by validation AUROC; AUROC (with a
bootstrap interval) on the test split, and accuracy / balanced accuracy at a
decision threshold chosen on the validation split (Youden's J, the same rule for
every method, so a badly calibrated output does not decide the comparison).

Baselines trained in the same run on the same splits:

* ``pixels``: the same linear probe on the image itself, average-pooled to 32 x 32
  (does the encoder add anything over raw pixels?);
* ``cnn``: a small CNN trained end to end with labels (about 100 k parameters, random
  shifts as augmentation, early stopping on validation AUROC): what supervision buys.

The majority-class accuracy is reported alongside, since the classes are imbalanced.

More than two classes (brain tumour type: meningioma, glioma, pituitary): the same
protocol with a multinomial logistic regression and a softmax CNN; AUROC is the mean
one-vs-rest AUROC over the classes (macro), C and the CNN's early stopping are chosen
by it, and accuracy / balanced accuracy take the most probable class (no threshold).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from medzoo.errors import ConfigError, DataError, DependencyError
from medzoo.evaluate import plots
from medzoo.evaluate.common import (
    Result,
    dataset_of,
    family_of,
    format_table,
    interval,
    load_split,
    model_label,
    prepare,
    resolve_model,
)
from medzoo.evaluate.report import markdown_table
from medzoo.evaluate.stats import auroc, bootstrap_ci, macro_auroc, roc_curve

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: names of labels 0, 1, ... per dataset (by name prefix); Kermany's otherwise
_CLASS_NAMES = {"busbra": ("benign", "malignant"), "brain_tumor": ("meningioma", "glioma", "pituitary")}


def class_labels(labels, what="labels") -> np.ndarray:
    """Labels as class indices 0..K-1 (int64); anything else is a DataError."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size and (not np.all(np.equal(np.mod(labels, 1), 0)) or labels.min() < 0):
        raise DataError(f"{what} must be class indices 0, 1, ... (0 normal / 1 abnormal for two classes), "
                        f"got {np.unique(labels)[:10]}")
    return labels.astype(np.int64)


def _auroc(labels, scores) -> float:
    """Binary AUROC of (N,) scores, or the macro one-vs-rest AUROC of (N, K) probabilities."""
    return macro_auroc(labels, scores) if np.ndim(scores) == 2 else auroc(labels, scores)


def encoder_features(model, images, batch_size=64) -> np.ndarray:
    """Frozen features (N, D): flattened code (autoencoder), posterior mean (VAE), pre-quantisation map (VQ-VAE)."""
    x = prepare(model, images)
    if family_of(model) == "vqvae":
        z = model.encode_continuous(x, batch_size=batch_size)
    else:
        z = model.encode(x, batch_size=batch_size)
    return np.asarray(z, np.float32).reshape(len(x), -1)


def pooled_pixels(images, size=32) -> np.ndarray:
    """Images (N, H, W, C) average-pooled to ``size`` x ``size`` and flattened (the pixel baseline's features)."""
    x = np.asarray(images, np.float32)
    n, h, w, c = x.shape
    fh, fw = max(1, h // size), max(1, w // size)
    x = x[:, : h - h % fh, : w - w % fw]
    return x.reshape(n, x.shape[1] // fh, fh, x.shape[2] // fw, fw, c).mean(axis=(2, 4)).reshape(n, -1)


def _sklearn():
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise DependencyError("the linear probe needs scikit-learn: pip install 'medzoo[eval]'") from exc
    return LogisticRegression, StandardScaler


def fit_linear_probe(train, val, test, *, c_grid=C_GRID, seed=0) -> dict:
    """Logistic regression on standardised features; C chosen by validation AUROC.

    Each of ``train``, ``val``, ``test`` is ``(features (N, D), labels (N,))``.
    Returns test probabilities (N,) of class 1 for two classes, (N, K) for more, the chosen C
    and every C's validation AUROC (macro one-vs-rest for more than two classes).
    """
    LogisticRegression, StandardScaler = _sklearn()
    scaler = StandardScaler().fit(train[0])
    xs = [scaler.transform(f) for f in (train[0], val[0], test[0])]
    val_auroc = {}
    fitted = {}
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed)
        clf.fit(xs[0], train[1])
        binary = len(clf.classes_) == 2
        val_auroc[c] = auroc(val[1], clf.decision_function(xs[1])) if binary else \
            macro_auroc(val[1], clf.predict_proba(xs[1]))
        fitted[c] = clf
    best = max(c_grid, key=lambda c: (val_auroc[c], -c))  # ties: the stronger regularisation
    clf = fitted[best]
    k = len(clf.classes_)

    def scores(x):
        return clf.predict_proba(x)[:, 1] if k == 2 else clf.predict_proba(x)

    return {"test_scores": scores(xs[2]), "val_scores": scores(xs[1]), "C": best,
            "val_auroc": val_auroc, "features": int(train[0].shape[1]),
            "trained_parameters": int((train[0].shape[1] + 1) * (1 if k == 2 else k))}


def build_cnn(input_shape, seed=0, translate=0.05, classes=2):
    """The supervised baseline: 4 strided conv blocks (16-32-64-128), global average pooling, a logistic output
    (a softmax over ``classes`` for more than two).

    Random shifts of up to ``translate`` of the image size augment the training images (as the zoo's
    autoencoders were trained); batch normalisation uses momentum 0.9 so its statistics keep up within
    the few hundred steps of a short run, which keeps the validation AUROC used for early stopping honest.
    """
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.RandomTranslation(translate, translate, fill_mode="constant", seed=seed)(inputs) \
        if translate else inputs
    init = keras.initializers.HeNormal(seed=seed)
    for i, filters in enumerate((16, 32, 64, 128)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, kernel_initializer=init,
                                name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1 if classes == 2 else classes, activation="sigmoid" if classes == 2 else "softmax",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed), name="logit")(x)
    return keras.Model(inputs, outputs, name="supervised_cnn")


def _best_by_validation_auroc(val, patience):
    """A Keras callback: early stopping on the validation macro AUROC (more than two classes), best weights kept."""
    import keras

    class BestByValidationAUROC(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.best, self.best_epoch, self.best_weights, self.history = -1.0, 0, None, []

        def on_epoch_end(self, epoch, logs=None):
            value = macro_auroc(val[1], self.model.predict(val[0], batch_size=256, verbose=0))
            self.history.append(value)
            if value > self.best:
                self.best, self.best_epoch, self.best_weights = value, epoch + 1, self.model.get_weights()
            elif epoch + 1 - self.best_epoch >= patience:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return BestByValidationAUROC()


def train_cnn(train, val, test, *, epochs=30, batch_size=64, patience=8, seed=0, verbose=0) -> dict:
    """Train :func:`build_cnn` end to end (Adam 1e-3, early stopping on validation AUROC); test probabilities.

    Two classes: binary cross-entropy, probabilities (N,) of class 1; more: a softmax, (N, K), early
    stopping on the macro one-vs-rest AUROC.
    """
    import keras

    keras.utils.set_random_seed(seed)
    k = int(max(train[1].max(), val[1].max(), test[1].max())) + 1
    model = build_cnn(train[0].shape[1:], seed, classes=k)
    if k == 2:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc")])
        stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience,
                                             restore_best_weights=True)
        targets = (train[1].astype("float32"), val[1].astype("float32"))
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        stop = _best_by_validation_auroc(val, patience)
        targets = (train[1], val[1])
    history = model.fit(train[0], targets[0], validation_data=(val[0], targets[1]), epochs=epochs,
                        batch_size=batch_size, callbacks=[stop], verbose=verbose, shuffle=True)
    val_aucs = history.history.get("val_auc", []) if k == 2 else stop.history

    def scores(x):
        out = model.predict(x, batch_size=256, verbose=0)
        return out[:, 0] if k == 2 else out

    return {"test_scores": scores(test[0]), "val_scores": scores(val[0]),
            "epochs_run": len(val_aucs), "best_epoch": int(np.argmax(val_aucs)) + 1 if val_aucs else 0,
            "trained_parameters": int(model.count_params())}


@dataclasses.dataclass(repr=False, eq=False)
class ProbeResult(Result):
    """Test-split AUROC, accuracy and balanced accuracy of the probe and its baselines.

    Attributes:
        methods: ``{name: {"auroc", "ci_low", "ci_high", "accuracy", "balanced_accuracy", ...}}``.
        scores: ``{name: (N,) test probabilities}``; labels: (N,) test labels.
    """

    model: str
    sources: dict
    labels: np.ndarray
    scores: dict
    methods: dict
    majority_accuracy: float
    settings: dict
    task = "probe"

    def to_dict(self, per_image=False) -> dict:
        d = {"task": self.task, "model": self.model, "data": self.sources, "methods": self.methods,
             "majority_class_accuracy": self.majority_accuracy, "settings": self.settings}
        if per_image:
            d["per_image"] = {"label": self.labels, **self.scores}
        return d

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 2

    @property
    def class_names(self) -> tuple:
        """Names of labels 0, 1, ... of the probed dataset (chest X-ray's unless known otherwise)."""
        source = str(self.sources.get("test", "")) if isinstance(self.sources, dict) else ""
        known = next((names for prefix, names in _CLASS_NAMES.items() if source.startswith(prefix)), None)
        if known is None and self.num_classes == 2:
            known = ("normal", "pneumonia")
        if known is None or len(known) < self.num_classes:
            known = tuple(f"class {k}" for k in range(self.num_classes))
        return tuple(known)

    def _counts(self) -> str:
        return " / ".join(f"{int((self.labels == k).sum())} {name}" for k, name in enumerate(self.class_names))

    def _rule(self) -> str:
        return ("accuracies at the threshold chosen on the validation split" if self.num_classes == 2 else
                "AUROC: mean one-vs-rest over the classes; accuracies of the most probable class")

    def table(self) -> str:
        rows = [[name, m["what"], m["trained_parameters"], m["auroc"], f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]",
                 m["accuracy"], m["balanced_accuracy"]] for name, m in self.methods.items()]
        return format_table(["method", "features", "trained params", "AUROC", "95% CI", "accuracy", "bal. acc."],
                            rows, title=f"linear probe of {self.model}: test {self._counts()} "
                                        f"(majority-class accuracy {self.majority_accuracy:.3f}; {self._rule()})")

    #: columns of :meth:`summary_rows` (and of :meth:`markdown`)
    SUMMARY_HEADERS = ("method", "features", "trained params", "AUROC [95% CI]", "accuracy", "balanced accuracy",
                       "AUROC vs CNN", "bal. acc. vs CNN")

    def summary_rows(self, reference=None) -> list:
        """One row per method: features, trained parameters, AUROC [interval], accuracy, balanced accuracy, and
        the differences in AUROC and balanced accuracy to the supervised CNN.

        Args:
            reference: the CNN's entry of :attr:`methods` to compare with (default: this result's own
                ``cnn:supervised``; give another result's when this one ran without baselines, so that rows
                of several results stack into one table under :attr:`SUMMARY_HEADERS`).
        """
        cnn = reference if reference is not None else self.methods.get("cnn:supervised")
        rows = []
        for name, m in self.methods.items():
            delta = [None, None] if cnn is None or m is cnn else [
                f"{m['auroc'] - cnn['auroc']:+.3f}", f"{m['balanced_accuracy'] - cnn['balanced_accuracy']:+.3f}"]
            rows.append([name, m["what"], m["trained_parameters"],
                         f"{m['auroc']:.3f} {interval(m['ci_low'], m['ci_high'])}", f"{m['accuracy']:.3f}",
                         f"{m['balanced_accuracy']:.3f}", *delta])
        return rows

    def task_name(self) -> str:
        names = self.class_names
        return f"{names[1]} vs {names[0]}" if self.num_classes == 2 else " / ".join(names)

    def caption(self) -> str:
        rule = ("accuracies at the threshold chosen on the validation split (Youden's J)" if self.num_classes == 2
                else "AUROC is the mean one-vs-rest AUROC over the classes, accuracies those of the most "
                     "probable class")
        return (f"Linear probes, {self.task_name()}, test split ({self._counts()}; majority-class "
                f"accuracy {self.majority_accuracy:.3f}); {rule}.")

    def markdown(self) -> str:
        return f"{self.caption()}\n\n{markdown_table(self.SUMMARY_HEADERS, self.summary_rows())}"

    def plot(self, path) -> pathlib.Path:
        """ROC curves of every method; more than two classes: one panel per class, that class against the rest."""
        k = self.num_classes
        panels = [None] if k == 2 else list(range(k))
        fig = plots.figure(5.2 * len(panels), 5)
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        for ax, cls in zip(axes, panels):
            for i, (name, m) in enumerate(self.methods.items()):
                scores = self.scores[name]
                if cls is None:
                    fpr, tpr, _ = roc_curve(self.labels, scores)
                    label = f"{name}: AUROC {m['auroc']:.3f}, acc {m['accuracy']:.3f}"
                else:
                    fpr, tpr, _ = roc_curve(self.labels == cls, scores[:, cls])
                    label = f"{name}: AUROC {m['per_class_auroc'][cls]:.3f}"
                ax.plot(fpr, tpr, color=plots.PALETTE[i], lw=1.5, label=label)
            ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            what = self.task_name() if cls is None else f"{self.class_names[cls]} vs the rest"
            ax.set_title(f"{what}, test split: {self.model}", fontsize=9)
            ax.legend(fontsize=7, loc="lower right")
            ax.set_aspect("equal")
        return plots.save(fig, path)


def _split(model, given, name, dataset, max_images, seed):
    if given is not None:
        images, labels = given
        return prepare(model, images), class_labels(labels, f"{name} labels"), f"{name} arrays given by the caller"
    x, y = load_split(model, name, dataset=dataset, max_images=max_images, seed=seed)
    return x, class_labels(y, f"{name} labels"), f"{dataset_of(model, dataset)}:{name}"


def youden_threshold(labels, scores) -> float:
    """The score threshold maximising sensitivity + specificity (Youden's J) on ``labels``."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(thresholds[best]) if np.isfinite(thresholds[best]) else float(np.max(scores)) + 1.0


def _score(labels, scores, val_labels, val_scores, n_bootstrap, seed) -> dict:
    """AUROC with its interval; accuracy etc. at a threshold chosen on the validation split (same rule for all).

    More than two classes (``scores`` (N, K)): macro one-vs-rest AUROC with its interval, each class's
    AUROC, and accuracy / balanced accuracy of the most probable class.
    """
    if np.ndim(scores) == 2:
        pred = np.argmax(scores, axis=1)
        low, high = bootstrap_ci(labels, scores, statistic=macro_auroc, n_resamples=n_bootstrap, seed=seed)
        recall = [float((pred[labels == c] == c).mean()) for c in range(scores.shape[1])]
        return {"auroc": macro_auroc(labels, scores), "ci_low": low, "ci_high": high,
                "per_class_auroc": [auroc(labels == c, scores[:, c]) for c in range(scores.shape[1])],
                "accuracy": float((pred == labels).mean()), "balanced_accuracy": float(np.mean(recall)),
                "per_class_recall": recall}
    threshold = youden_threshold(val_labels, val_scores)
    pred = (scores >= threshold).astype(int)
    low, high = bootstrap_ci(labels, scores, n_resamples=n_bootstrap, seed=seed)
    recall = [float((pred[labels == c] == c).mean()) for c in (0, 1)]
    return {"auroc": auroc(labels, scores), "ci_low": low, "ci_high": high, "threshold": threshold,
            "accuracy": float((pred == labels).mean()), "balanced_accuracy": float(np.mean(recall)),
            "sensitivity": recall[1], "specificity": recall[0],
            "accuracy_at_0.5": float(((scores >= 0.5).astype(int) == labels).mean())}


def probe(model, *, train=None, val=None, test=None, dataset=None, max_images=None, seed=0,
          baselines=("pixels", "cnn"), cnn_epochs=30, cnn_batch_size=64, c_grid=C_GRID, n_bootstrap=1000,
          batch_size=64, verbose=0) -> ProbeResult:
    """Linear probe of a frozen encoder for the model's labels, with pixel and supervised-CNN baselines.

    Two classes (pneumonia vs normal, malignant vs benign) or more (brain tumour type); see the
    module docstring for what changes with more than two.

    Args:
        model: a zoo name, preset path or model.
        train, val, test: ``(images, labels)`` to use instead of the dataset's splits.
        max_images: a stratified subset of at most this many images per split.
        baselines: any of ``"pixels"`` (linear probe on 32 x 32 pooled pixels) and ``"cnn"``
            (a small CNN trained end to end on the same splits).
        cnn_epochs: maximum epochs of the CNN (early stopping on validation AUROC, patience 8).
        c_grid: inverse regularisation strengths tried for the logistic regressions.
    """
    model = resolve_model(model)
    unknown = set(baselines) - {"pixels", "cnn"}
    if unknown:
        raise ConfigError(f"unknown probe baselines {sorted(unknown)}; known: 'pixels', 'cnn'")
    splits = {name: _split(model, given, name, dataset, max_images, seed)
              for name, given in (("train", train), ("val", val), ("test", test))}
    classes = max(int(y.max()) + 1 for _, y, _ in splits.values())
    for name, (_, y, _) in splits.items():
        if len(np.unique(y)) < 2:
            raise ConfigError(f"the {name} split needs both classes for a probe")
        if classes > 2 and len(np.unique(y)) < classes:
            raise ConfigError(f"the {name} split lacks some of the {classes} classes ({sorted(np.unique(y))})")
    (xtr, ytr, _), (xva, yva, _), (xte, yte, _) = (splits[s] for s in ("train", "val", "test"))
    label = model_label(model)
    results, scores, val_scores = {}, {}, {}
    settings = {"c_grid": list(c_grid), "seed": seed, "bootstrap": n_bootstrap,
                "threshold": "Youden's J on the validation split, per method" if classes == 2 else
                "none: the most probable class"}

    feats = [encoder_features(model, x, batch_size) for x in (xtr, xva, xte)]
    lin = fit_linear_probe((feats[0], ytr), (feats[1], yva), (feats[2], yte), c_grid=c_grid, seed=seed)
    what = {"vqvae": "pre-quantisation map", "vae": "posterior mean", "autoencoder": "code"}[family_of(model)]
    scores[f"probe:{label}"] = lin["test_scores"]
    val_scores[f"probe:{label}"] = lin["val_scores"]
    results[f"probe:{label}"] = {"what": f"frozen {what} ({lin['features']}-d)", "C": lin["C"],
                                 "trained_parameters": lin["trained_parameters"],
                                 "val_auroc_per_C": {str(k): v for k, v in lin["val_auroc"].items()}}
    if "pixels" in baselines:
        pix = fit_linear_probe(*((pooled_pixels(x), y) for x, y in ((xtr, ytr), (xva, yva), (xte, yte))),
                               c_grid=c_grid, seed=seed)
        scores["probe:pixels"] = pix["test_scores"]
        val_scores["probe:pixels"] = pix["val_scores"]
        results["probe:pixels"] = {"what": f"pooled pixels ({pix['features']}-d)", "C": pix["C"],
                                   "trained_parameters": pix["trained_parameters"],
                                   "val_auroc_per_C": {str(k): v for k, v in pix["val_auroc"].items()}}
    if "cnn" in baselines:
        cnn = train_cnn((xtr, ytr), (xva, yva), (xte, yte), epochs=cnn_epochs, batch_size=cnn_batch_size, seed=seed,
                        verbose=verbose)
        scores["cnn:supervised"] = cnn["test_scores"]
        val_scores["cnn:supervised"] = cnn["val_scores"]
        results["cnn:supervised"] = {"what": "images, end to end", "trained_parameters": cnn["trained_parameters"],
                                     "epochs_run": cnn["epochs_run"], "best_epoch": cnn["best_epoch"]}
        settings["cnn_epochs"] = cnn_epochs
    for name in results:
        results[name].update(_score(yte, np.asarray(scores[name], np.float64), yva,
                                    np.asarray(val_scores[name], np.float64), n_bootstrap, seed))
    majority = float(np.bincount(yte).max() / len(yte))
    sources = {name: src for name, (_, _, src) in splits.items()}
    sources["images"] = {name: int(len(y)) for name, (_, y, _) in splits.items()}
    return ProbeResult(label, sources, yte, {k: np.asarray(v, np.float64) for k, v in scores.items()}, results,
                       majority, settings)
