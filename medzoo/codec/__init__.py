"""The learned codecs as a product: bitstreams, entropy models, ``compress`` / ``decompress``.

* :mod:`medzoo.codec.stream` - the self-describing ``.mzc`` stream (magic, format version,
  model and weights ids, shapes, CRC32) and :func:`compress` / :func:`decompress` of a
  VQ-VAE's code maps, range coded with ``constriction``.
* :mod:`medzoo.codec.entropy` - :class:`EntropyModel`, the count-based context model of
  code maps: fitted on a model's training split, shipped in its preset, cached otherwise.
* :mod:`medzoo.codec.hyperprior` - range coding of a scale-hyperprior codec's latents
  (format 2 streams) with tables every machine rebuilds to the same bits.
* :mod:`medzoo.codec.exact` - the reproducible arithmetic behind those tables: exp, log,
  the Gaussian CDF from IEEE basic operations, and networks run in exact fixed point.
* :mod:`medzoo.codec.lossless` - exact coding of integer pixels (8-16 bit, signed too):
  neighbour prediction, optionally on top of the codec's exact reconstruction; its compiled loops are
  :mod:`medzoo.codec.wavefront` (prediction, a wavefront at a time) and :mod:`medzoo.codec.ans` (the
  range coder, writing ``constriction``'s streams word for word).
* :mod:`medzoo.codec.colour` - the reversible colour transform (YCoCg-R) lossless streams
  apply to 8-bit colour, whose planes are nearly the same grey image.
* :mod:`medzoo.codec.tiles` - the tile grid that keeps memory bounded on large images.

Evaluation (rate-distortion curves against JPEG, JPEG 2000, WebP and JPEG XL) lives in
:mod:`medzoo.evaluate.compression` and calls this package; nothing here imports evaluation.
"""

from medzoo.codec.entropy import EntropyModel, fit_entropy_model, save_to_preset
from medzoo.codec.stream import (
    BitstreamError,
    StreamHeader,
    compress,
    decompress,
    decompress_codes,
    decompress_latents,
    read_header,
)

__all__ = ["BitstreamError", "EntropyModel", "StreamHeader", "compress", "decompress", "decompress_codes",
           "decompress_latents", "fit_entropy_model", "read_header", "save_to_preset"]
