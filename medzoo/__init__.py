"""medzoo: a Keras model zoo of autoencoders for medical imaging, with verified pretrained weights.

The public face of the package; everything here is a thin re-export.
"""

from medzoo.version import __version__  # noqa: F401

from medzoo.errors import (  # noqa: E402
    ConfigError,
    DataError,
    DependencyError,
    IntegrityError,
    MedzooError,
    ModelNotFoundError,
)
from medzoo.models import VAE, VQVAE, ConvAutoencoder, VectorQuantizer  # noqa: E402  (registers them with Keras)
from medzoo.callbacks import KLWarmup  # noqa: E402
from medzoo.data import (  # noqa: E402
    PreprocessSpec,
    from_arrays,
    from_directory,
    load_npz,
    read_dicom,
    read_image,
    read_images,
    sample_images,
    to_display,
)
from medzoo.zoo import info, list_models, load, load_preset, push_to_hub, save_preset  # noqa: E402
from medzoo.recipes import train  # noqa: E402
from medzoo import evaluate  # noqa: E402  (callable: medzoo.evaluate(model, task); tasks: medzoo.evaluate.<task>)
from medzoo.evaluate.codec import compress, decompress  # noqa: E402
from medzoo.evaluate.demo import demo  # noqa: E402
