"""Probability models of VQ-VAE code maps, learned from the training split, for the range coder.

An :class:`EntropyModel` holds code counts gathered from the code maps of a
model's training images: overall (``marginal``), per position in the map
(``position``), after each left neighbour (``left``) and below each upper
neighbour (``up``). The probability of the next code is a mixture

    p(c) = w_uniform / K + w_marginal M[c] + w_position P[pos, c] + w_left L[left, c] + w_up U[up, c]

(the ``"context"`` kind; ``"position"`` uses the first three terms, ``"iid"`` the
first two). The tables come from the training split; the mixture weights are fitted
by EM on held-out code maps (the validation split), which is what makes the
mixture a smoothed model rather than one that memorised its training counts. The
uniform term gives every code a non-zero probability, so any code map can be coded.

Determinism: the decoder must compute bit-identical probabilities. Every term is
an elementwise product and sum in a fixed order (no ``exp``, no reductions), so
numpy gives the same float64 values on any machine; constriction quantises them to
fixed point exactly the same way in encoder and decoder. Each stream records a
digest of the model it was coded with, so a stream is never decoded with a
different model.

The entropy model is part of the codec, so it ships with the model: a VQ-VAE preset
holds it as ``entropy_model.npz`` (:meth:`EntropyModel.save`: the count tables as
integer arrays plus a JSON header with the mixture weights, the digest and where it
was fitted: dataset, splits and the fingerprint of the weights, a sha256 over their
values, see :func:`weights_fingerprint`). The zoo lists and verifies it like the
preset's other files; :func:`save_to_preset` adds it to a preset (training recipes
do so for every VQ-VAE they write). :func:`entropy_model_for` uses, in this order:

1. the preset's ``entropy_model.npz`` (refused if it was fitted for other weights),
2. a cached one, ``<medzoo cache>/codec/<weights fingerprint>.npz``,
3. one fitted now, deterministically, on the training split named in the preset's
   metadata (needs that dataset on disk, ``$MEDZOO_DATA_DIR``), then cached.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
import tempfile

import numpy as np

from medzoo.errors import ConfigError, DataError

log = logging.getLogger(__name__)

COMPONENTS = ("uniform", "marginal", "position", "left", "up")
#: entropy-model kinds and the mixture components each uses; the id is what a stream stores
KINDS = {"iid": COMPONENTS[:2], "position": COMPONENTS[:3], "context": COMPONENTS}
KIND_IDS = {"iid": 0, "position": 1, "context": 2}
FILE_FORMAT = 1
_EM_ITERATIONS = 300
_CHUNK = 256
#: the file name of a preset's entropy model (``medzoo.zoo.safety.ENTROPY_MODEL_FILE``)
PRESET_FILE = "entropy_model.npz"


def weights_fingerprint(model) -> str:
    """sha256 (hex) over the model's weight values (shapes, dtypes and bytes, in weight order).

    Independent of file names and variable names, so a model built in memory and
    the same weights loaded from a preset have the same fingerprint.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(variable.numpy())
        digest.update(f"{value.shape}{value.dtype.str}".encode())
        digest.update(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.hexdigest()


def _normalised(counts: np.ndarray) -> np.ndarray:
    """Rows of counts -> probability rows (float64); rows never seen become uniform."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    uniform = np.full_like(counts, 1.0 / counts.shape[-1])
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), uniform)


def _contexts(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Left and upper neighbour of every position (``k`` at the border), shape of ``codes`` (N, h, w)."""
    left = np.full_like(codes, k)
    up = np.full_like(codes, k)
    left[:, :, 1:] = codes[:, :, :-1]
    up[:, 1:, :] = codes[:, :-1, :]
    return left, up


@dataclasses.dataclass(frozen=True, eq=False)
class EntropyModel:
    """Code counts of a VQ-VAE's training code maps and the fitted mixture weights of each kind.

    Build one with :meth:`fit` (from code maps) or :func:`fit_entropy_model` (from images).

    Attributes:
        num_codes: the codebook size K.
        code_shape: (h, w) of one code map.
        marginal: (K,) counts; position: (h * w, K); left, up: (K + 1, K) (row K: the border).
        weights: ``{kind: mixture weights over KINDS[kind]}``.
        info: provenance and measured rates (JSON-able), not part of the digest.
    """

    num_codes: int
    code_shape: tuple
    marginal: np.ndarray
    position: np.ndarray
    left: np.ndarray
    up: np.ndarray
    weights: dict
    info: dict = dataclasses.field(default_factory=dict)

    # ----------------------------------------------------------- fitting
    @classmethod
    def fit(cls, train_codes, val_codes=None, num_codes=None, info=None) -> "EntropyModel":
        """Count ``train_codes`` (N, h, w) and fit each kind's mixture weights on ``val_codes``.

        Without ``val_codes`` the last tenth of the training maps is held out to fit the
        weights (tables from the rest), then the tables are recounted on all of them.
        """
        train_codes = np.asarray(train_codes)
        if train_codes.ndim != 3 or len(train_codes) == 0 or not np.issubdtype(train_codes.dtype, np.integer):
            raise DataError(
                f"code maps must be an integer array (N, h, w), got {train_codes.dtype} {train_codes.shape}")
        k = int(num_codes if num_codes is not None else train_codes.max() + 1)
        if train_codes.min() < 0 or train_codes.max() >= k:
            raise DataError(f"codes must lie in [0, {k})")
        if val_codes is None:
            cut = max(1, len(train_codes) - max(1, len(train_codes) // 10)) if len(train_codes) > 1 else 1
            held_out = train_codes[cut:] if cut < len(train_codes) else train_codes
            weights = cls._counted(train_codes[:cut], k, {})._fit_weights(held_out)
        else:
            weights = cls._counted(train_codes, k, {})._fit_weights(np.asarray(val_codes))
        model = cls._counted(train_codes, k, weights, info)
        rates = {"train_bits_per_code": {kind: model.cross_entropy(train_codes, kind) for kind in KINDS}}
        if val_codes is not None:
            rates["val_bits_per_code"] = {kind: model.cross_entropy(np.asarray(val_codes), kind) for kind in KINDS}
        model.info.update({"train_maps": int(len(train_codes)),
                           "val_maps": None if val_codes is None else int(len(val_codes)), **rates})
        return model

    @classmethod
    def _counted(cls, codes, k, weights, info=None) -> "EntropyModel":
        n, h, w = codes.shape
        left, up = _contexts(codes, k)
        flat = codes.reshape(n, -1)
        position = np.zeros((h * w, k), dtype=np.int64)
        np.add.at(position, (np.broadcast_to(np.arange(h * w), flat.shape), flat), 1)
        pairs = lambda ctx: np.bincount((ctx.astype(np.int64) * k + codes).ravel(), minlength=(k + 1) * k)  # noqa: E731
        return cls(
            num_codes=k, code_shape=(int(h), int(w)),
            marginal=np.bincount(codes.ravel(), minlength=k).astype(np.int64),
            position=position, left=pairs(left).reshape(k + 1, k), up=pairs(up).reshape(k + 1, k),
            weights=dict(weights), info=dict(info or {}),
        )

    def _component_likelihoods(self, codes) -> dict:
        """Probability each component gives the actual code, per symbol (flattened), for EM and rates."""
        codes = self._check_codes(codes)
        n = len(codes)
        left, up = _contexts(codes, self.num_codes)
        pos = np.broadcast_to(np.arange(codes[0].size).reshape(self.code_shape), codes.shape)
        t = self._tables
        return {
            "uniform": np.full(codes.size, 1.0 / self.num_codes),
            "marginal": t["marginal"][codes].ravel(),
            "position": t["position"][pos, codes].ravel(),
            "left": t["left"][left, codes].ravel(),
            "up": t["up"][up, codes].ravel(),
        } if n else {}

    def _fit_weights(self, held_out) -> dict:
        like = self._component_likelihoods(held_out)
        weights = {}
        for kind, names in KINDS.items():
            p = np.stack([like[c] for c in names])  # (components, symbols)
            w = np.full(len(names), 1.0 / len(names))
            for _ in range(_EM_ITERATIONS):
                mix = w[:, None] * p
                w = (mix / mix.sum(axis=0, keepdims=True)).mean(axis=1)
            w = np.maximum(w, 1e-6)  # keep every term alive (the uniform one makes every code codable)
            weights[kind] = [float(v) for v in w / w.sum()]
        return weights

    # ------------------------------------------------------- probabilities
    @functools.cached_property
    def _tables(self) -> dict:
        return {"marginal": _normalised(self.marginal), "position": _normalised(self.position),
                "left": _normalised(self.left), "up": _normalised(self.up)}

    def _check_codes(self, codes, any_shape: bool = False) -> np.ndarray:
        """Code maps as int64; of the fitted shape unless ``any_shape`` (coding without the position term)."""
        codes = np.asarray(codes)
        if codes.ndim != 3 or min(codes.shape[1:], default=0) < 1 or \
                (not any_shape and tuple(codes.shape[1:]) != tuple(self.code_shape)):
            raise DataError(f"expected code maps (N, {self.code_shape[0]}, {self.code_shape[1]}), got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise DataError(f"codes must lie in [0, {self.num_codes})")
        return codes.astype(np.int64, copy=False)

    def _kind(self, kind) -> list:
        if kind not in KINDS:
            raise ConfigError(f"entropy model kind must be one of {list(KINDS)}, got {kind!r}")
        if kind not in self.weights:
            raise ConfigError(f"this entropy model has no fitted weights for {kind!r}")
        return self.weights[kind]

    def step_probabilities(self, position: int, left, up, kind: str) -> np.ndarray:
        """Unnormalised probabilities (len(left), K) of the codes at flat ``position`` given their neighbours.

        ``position`` None: a map of another size than the fitted one, whose positions mean nothing
        to the per-position table; the mixture then leaves that term out (the coder normalises the
        rest), so any size codes with the neighbour terms alone.
        The encoder and the decoder both call exactly this, so their values are bit-identical.
        """
        w = dict(zip(KINDS[kind], self._kind(kind)))
        t = self._tables
        probs = w["uniform"] * np.full(self.num_codes, 1.0 / self.num_codes) + w["marginal"] * t["marginal"]
        if "position" in w and position is not None:
            probs = probs + w["position"] * t["position"][position]
        probs = np.broadcast_to(probs, (len(left), self.num_codes))
        if "left" in w:
            probs = probs + w["left"] * t["left"][left]
            probs = probs + w["up"] * t["up"][up]
        return np.ascontiguousarray(probs)

    def cross_entropy(self, codes, kind="context") -> float:
        """Ideal code length of ``codes`` under this model, in bits per code (what a range coder approaches)."""
        like = self._component_likelihoods(codes)
        w = self._kind(kind)
        p = sum(wi * like[c] for wi, c in zip(w, KINDS[kind]))
        return float(-np.mean(np.log2(p)))

    # ------------------------------------------------------------ identity
    @functools.cached_property
    def digest(self) -> str:
        """sha256 (hex) over the counts and weights: what a stream records to refuse a different model."""
        h = hashlib.sha256()
        h.update(json.dumps({"k": self.num_codes, "shape": list(self.code_shape), "weights": self.weights},
                            sort_keys=True).encode())
        for table in (self.marginal, self.position, self.left, self.up):
            h.update(np.ascontiguousarray(table, dtype="<i8").tobytes())
        return h.hexdigest()

    # ----------------------------------------------------------------- I/O
    def save(self, path) -> pathlib.Path:
        """Write the model as a compressed ``.npz`` (counts + JSON header), atomically.

        File format 1: an ``.npz`` (a zip of ``.npy`` arrays, no pickles; its entries carry no
        time stamps, so the same model gives the same bytes). ``header`` is a 0-d unicode
        array holding JSON: ``format``, ``num_codes``, ``code_shape``, ``weights`` (the
        mixture weights of each kind), ``digest`` and ``info`` (provenance: ``model``,
        ``weights_fingerprint``, ``dataset``, ``splits``, ``classes``, map counts and
        rates). ``marginal``, ``position``, ``left`` and ``up`` are the count tables,
        stored little-endian in the smallest unsigned type that holds them (read back as
        int64; the digest is over their int64 values).
        """
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": FILE_FORMAT, "num_codes": self.num_codes, "code_shape": list(self.code_shape),
                  "weights": self.weights, "info": self.info, "digest": self.digest}
        tables = {name: _compact(getattr(self, name)) for name in ("marginal", "position", "left", "up")}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez_compressed(tmp, header=np.array(json.dumps(header, sort_keys=True)), **tables)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path) -> "EntropyModel":
        """Read a file written by :meth:`save`; its recorded digest is checked."""
        try:
            with np.load(path, allow_pickle=False) as f:
                header = json.loads(str(f["header"]))
                arrays = {k: np.asarray(f[k], dtype=np.int64) for k in ("marginal", "position", "left", "up")}
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read entropy model {path}: {exc}") from exc
        if header.get("format") != FILE_FORMAT:
            raise DataError(f"{path}: entropy model format {header.get('format')} is not {FILE_FORMAT}")
        model = cls(num_codes=int(header["num_codes"]), code_shape=tuple(header["code_shape"]),
                    weights=header["weights"], info=header.get("info", {}), **arrays)
        if model.digest != header.get("digest"):
            raise DataError(f"{path}: the entropy model's content does not match its recorded digest (damaged file)")
        return model


def _compact(table) -> np.ndarray:
    """Counts in the smallest little-endian unsigned type that holds them (an eighth to a half of int64)."""
    table = np.asarray(table, dtype=np.int64)
    top = int(table.max()) if table.size else 0
    for dtype in ("u1", "<u2", "<u4"):
        if top <= np.iinfo(dtype).max:
            return table.astype(dtype)
    return table.astype("<i8")


# ------------------------------------------------------------- from models
def encode_in_chunks(model, images, batch_size=64, desc="encoding") -> np.ndarray:
    """VQ-VAE code maps of many images (raw or model inputs), preprocessing one chunk at a time."""
    from medzoo.progress import progress
    from medzoo.zoo.identity import prepare

    out = [model.encode(prepare(model, images[i:i + _CHUNK]), batch_size=batch_size)
           for i in progress(range(0, len(images), _CHUNK), desc, total=math.ceil(len(images) / _CHUNK))]
    return np.concatenate(out).astype(np.int64)


def cache_path(model, cache_dir=None) -> pathlib.Path:
    """Where the entropy model of ``model`` is cached: ``<medzoo cache>/codec/<weights fingerprint>.npz``."""
    from medzoo.zoo.hub import cache_root

    return cache_root(cache_dir) / "codec" / f"{weights_fingerprint(model)}.npz"


def fit_entropy_model(model, train_images, val_images=None, *, batch_size=64, cache=True, cache_dir=None,
                      info=None) -> EntropyModel:
    """Encode images with a VQ-VAE and fit its entropy model; cache it for ``compress``/``decompress``.

    Args:
        model: a VQ-VAE.
        train_images: images whose code maps give the counts (the training split).
        val_images: held-out images for the mixture weights (the validation split).
        cache: write the model to :func:`cache_path`, where ``compress`` and ``decompress`` find it.
    """
    if not hasattr(model, "quantizer"):
        raise ConfigError(f"entropy models are for VQ-VAE code maps; got a {type(model).__name__}")
    train = encode_in_chunks(model, train_images, batch_size, "codes (train)")
    val = None if val_images is None else encode_in_chunks(model, val_images, batch_size, "codes (val)")
    from medzoo.zoo.identity import model_label, model_version

    info = {"model": model_label(model), "model_version": model_version(model),
            "weights_fingerprint": weights_fingerprint(model), **(info or {})}
    entropy_model = EntropyModel.fit(train, val, model.num_embeddings, info=info)
    if cache:
        entropy_model.save(cache_path(model, cache_dir))
    return entropy_model


def _file_digest(model) -> tuple[pathlib.Path, str] | tuple[None, None]:
    """``(path, sha256)`` of the entropy model shipped in the preset ``model`` was loaded from, if it has one."""
    metadata = getattr(model, "zoo_metadata", None) or {}
    digest = (metadata.get("files") or {}).get(PRESET_FILE)
    if not digest or not metadata.get("path"):
        return None, None
    return pathlib.Path(metadata["path"]) / PRESET_FILE, digest


def _fits_codes(entropy_model: EntropyModel, model) -> bool:
    """The model's codebook size, and its code map size when it has one: an any-size model's code maps are
    as large as its images, and the entropy model (fitted at one size) fixes the size it codes."""
    fixed = model.code_shape[0] is not None
    return entropy_model.num_codes == model.num_embeddings and (
        not fixed or tuple(entropy_model.code_shape) == tuple(model.code_shape))


def check_fits(entropy_model: EntropyModel, model, where="the entropy model") -> None:
    """Raise DataError unless ``entropy_model`` was fitted for exactly these weights (codebook, code shape, values)."""
    from medzoo.zoo.identity import model_label

    shape = tuple(entropy_model.code_shape)
    if not _fits_codes(entropy_model, model):
        raise DataError(f"{where} is for {entropy_model.num_codes} codes in {shape[0]}x{shape[1]} maps, but "
                        f"{model_label(model)} has {model.num_embeddings} codes in "
                        + ("maps as large as its images" if model.code_shape[0] is None
                           else f"{model.code_shape[0]}x{model.code_shape[1]} maps"))
    fitted_for = entropy_model.info.get("weights_fingerprint")
    fingerprint = weights_fingerprint(model)
    if fitted_for != fingerprint:
        raise DataError(
            f"{where} is stale: it was fitted for weights {str(fitted_for)[:12]}, but {model_label(model)} has "
            f"weights {fingerprint[:12]}; refit it for these weights (medzoo.codec.entropy.save_to_preset) "
            "or pass the matching entropy_model="
        )


def shipped_entropy_model(model) -> EntropyModel | None:
    """The entropy model shipped in the preset ``model`` came from (checked), or None if its preset has none.

    The file is checked against the sha256 its preset records (again, at use) and must
    have been fitted for this model's weights.
    """
    path, digest = _file_digest(model)
    if path is None:
        return None
    from medzoo.zoo.integrity import verify_files

    verify_files(path.parent, {PRESET_FILE: digest}, origin=f"the preset {path.parent}")
    entropy_model = EntropyModel.load(path)
    check_fits(entropy_model, model, where=str(path))
    return entropy_model


def _training_provenance(model) -> dict:
    from medzoo.zoo.identity import training_info

    training = training_info(model)
    dataset = training.get("dataset")
    name = dataset.get("name") if isinstance(dataset, dict) else dataset
    info = {"dataset": name, "classes": training.get("classes"), "splits": {"counts": "train", "weights": "val"}}
    if isinstance(dataset, dict) and dataset.get("sha256"):
        info["dataset_sha256"] = dataset["sha256"]
    return info


def _fit_on_training_split(model, *, cache, cache_dir=None, batch_size=64) -> EntropyModel:
    """Fit on the model's own training split (``train`` counts, ``val`` weights), as its metadata names it."""
    from medzoo.data import resolve_npz
    from medzoo.zoo.identity import model_label

    info = _training_provenance(model)
    try:
        resolve_npz(info["dataset"])
    except DataError:
        raise DataError(
            f"{model_label(model)} has no entropy model (none shipped in its preset, none cached) and fitting one "
            f"needs its training data {info['dataset']}.npz, which is not on disk: set MEDZOO_DATA_DIR to the "
            "folder that holds it, or pass entropy_model= to compress/decompress"
        ) from None
    log.info("fitting the entropy model of %s on its training split%s", model_label(model),
             f" (once; cached in {cache_path(model, cache_dir)})" if cache else "")
    train, val = (_stored_images(info["dataset"], split, info["classes"]) for split in ("train", "val"))
    return fit_entropy_model(model, train, val, batch_size=batch_size, cache=cache, cache_dir=cache_dir, info=info)


def _stored_images(dataset, split, classes=None) -> np.ndarray:
    """The stored images of one split, only those of ``classes`` when given."""
    from medzoo.data import load_npz

    images, labels = load_npz(dataset, split)
    if classes is None:
        return images
    if labels is None:
        raise DataError(f"split {split!r} of {dataset} has no labels to keep classes {list(classes)} from")
    return images[np.isin(np.asarray(labels).reshape(len(images), -1)[:, 0], list(classes))]


def entropy_model_for(model, *, cache_dir=None, fit=True) -> EntropyModel:
    """The entropy model of a VQ-VAE: shipped in its preset, else cached, else fitted now on its training data.

    1. The preset's ``entropy_model.npz``, verified against the sha256 the preset
       records and refused (DataError) if it was fitted for other weights.
    2. The cached one (``<medzoo cache>/codec/<weights fingerprint>.npz``).
    3. With ``fit``: one fitted on the dataset, split ``train`` (``val`` for the
       weights) and classes recorded in the model's preset metadata, then cached.
       Without that dataset on disk: a DataError saying so. An unsaved model has no
       such record: fit one with :func:`fit_entropy_model` first.
    """
    shipped = shipped_entropy_model(model)
    if shipped is not None:
        return shipped
    path = cache_path(model, cache_dir)
    if path.is_file():
        entropy_model = EntropyModel.load(path)
        if not _fits_codes(entropy_model, model):
            raise DataError(f"{path} does not fit this model (K or code shape differ); delete it to refit")
        return entropy_model
    from medzoo.zoo.identity import model_label, training_info

    if not fit or not training_info(model).get("dataset"):
        raise ConfigError(
            f"no entropy model for {model_label(model)} in its preset or in {path.parent}, and "
            + ("fitting is off" if not fit else "the model's metadata names no training dataset")
            + "; fit one with medzoo.codec.fit_entropy_model(model, train_images, val_images)"
        )
    return _fit_on_training_split(model, cache=True, cache_dir=cache_dir)


def save_to_preset(preset_dir, entropy_model=None, *, train_images=None, val_images=None, batch_size=64,
                   info=None) -> EntropyModel:
    """Fit (or take) a VQ-VAE preset's entropy model and ship it in the preset as ``entropy_model.npz``.

    The file is recorded in the preset's metadata.json (sha256) and summarised in its
    model card; ``add_to_manifest`` then lists it, ``medzoo.load`` verifies it and
    ``compress`` / ``decompress`` use it without any data on disk. Run this after the
    preset's weights are final (a later ``save_preset`` into the folder removes it).

    Args:
        preset_dir: a VQ-VAE preset folder (``save_preset``, or a run's ``<output>/preset``).
        entropy_model: an :class:`EntropyModel` fitted for these weights; default: fit one.
        train_images, val_images: images (raw or model inputs) to fit on; default: the
            training split named in the preset's metadata (``train`` counts, ``val``
            weights), which needs that dataset on disk (``$MEDZOO_DATA_DIR``).
        info: provenance to add to the file's header when fitting (JSON-able).

    Returns:
        The entropy model now in the preset.

    Example:
        >>> medzoo.codec.entropy.save_to_preset("runs/vqvae-chestxray-8x8/preset")
        >>> medzoo.zoo.add_to_manifest("runs/vqvae-chestxray-8x8/preset")
    """
    from medzoo.zoo.presets import attach_file, load_preset

    preset_dir = pathlib.Path(preset_dir)
    model = load_preset(preset_dir, compile=False)  # verifies the preset's files
    if not hasattr(model, "quantizer"):
        raise ConfigError(f"entropy models are for VQ-VAE code maps; {preset_dir} holds a {type(model).__name__}")
    if entropy_model is None:
        if train_images is None:
            entropy_model = _fit_on_training_split(model, cache=False, batch_size=batch_size)
        else:
            entropy_model = fit_entropy_model(model, train_images, val_images, batch_size=batch_size, cache=False,
                                              info={**_training_provenance(model), **(info or {})})
    elif not isinstance(entropy_model, EntropyModel):
        raise ConfigError(f"entropy_model must be a medzoo.codec.EntropyModel, got {type(entropy_model).__name__}")
    elif "weights_fingerprint" not in entropy_model.info:  # fitted on this model's codes by the caller's word
        entropy_model = dataclasses.replace(entropy_model, info={**entropy_model.info,
                                                                 "weights_fingerprint": weights_fingerprint(model)})
    check_fits(entropy_model, model, where="the entropy model given")
    summary = {"file": PRESET_FILE, "digest": entropy_model.digest, "kinds": sorted(entropy_model.weights),
               "code_shape": [int(v) for v in entropy_model.code_shape],  # the size its streams code
               "weights_fingerprint": entropy_model.info["weights_fingerprint"],
               "fitted_on": {k: entropy_model.info.get(k) for k in ("dataset", "classes", "train_maps", "val_maps")}
               | (entropy_model.info.get("splits") or {}),
               "pixels_per_code": int(model.downsample_factor) ** 2}
    for rates in ("val_bits_per_code", "train_bits_per_code"):
        if entropy_model.info.get(rates):
            summary[rates] = {k: round(float(v), 5) for k, v in entropy_model.info[rates].items()}
    with tempfile.TemporaryDirectory(prefix=".entropy-model-", dir=preset_dir.parent) as tmp:
        path = entropy_model.save(pathlib.Path(tmp) / PRESET_FILE)
        attach_file(preset_dir, path, PRESET_FILE, metadata={"entropy_model": summary})
    log.info("%s: wrote %s (%d bytes)", preset_dir, PRESET_FILE, (preset_dir / PRESET_FILE).stat().st_size)
    return entropy_model
