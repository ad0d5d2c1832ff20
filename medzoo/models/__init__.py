"""The medzoo model families, all subclassed and serializable ``keras.Model``s."""

from medzoo.models.autoencoder import ConvAutoencoder
from medzoo.models.base import AutoencoderModel
from medzoo.models.hyperprior import HyperpriorCodec
from medzoo.models.latent_prior import LatentPrior
from medzoo.models.quantizer import VectorQuantizer
from medzoo.models.segmenter import Segmenter
from medzoo.models.vae import VAE
from medzoo.models.vqvae import VQVAE

#: family name (as used in the zoo manifest) -> class
FAMILIES = {"autoencoder": ConvAutoencoder, "vae": VAE, "vqvae": VQVAE, "codec": HyperpriorCodec,
            "segmenter": Segmenter, "prior": LatentPrior}

__all__ = ["AutoencoderModel", "ConvAutoencoder", "HyperpriorCodec", "LatentPrior", "Segmenter", "VAE", "VQVAE", "VectorQuantizer", "FAMILIES"]
