"""The exceptions medzoo raises.

Every error a user can provoke with bad input, a bad file or a bad name is a
:class:`MedzooError`, so ``except medzoo.MedzooError`` catches all of them; the
subclasses say which part of the library refused.
"""


class MedzooError(Exception):
    """Base class of every error medzoo raises on purpose."""


class ConfigError(MedzooError, ValueError):
    """A model, preprocessing or recipe configuration is invalid."""


class DataError(MedzooError, ValueError):
    """An input file or array cannot be read or does not fit what is expected."""


class IntegrityError(MedzooError):
    """A downloaded or cached file does not have the checksum (sha256, MD5) it is published with."""


class ModelNotFoundError(MedzooError, KeyError):
    """A zoo name is unknown (the message suggests close matches)."""

    def __str__(self):  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class DependencyError(MedzooError, ImportError):
    """An optional package needed for this operation is not installed."""


class DomainShiftWarning(UserWarning):
    """Images far from a model's training data (another modality, acquisition, scale or added noise).

    Filter it by class, e.g. ``warnings.simplefilter("ignore", medzoo.DomainShiftWarning)``, where the shift
    is deliberate.
    """


class ResizeWarning(UserWarning):
    """A file's image was resized to the size a fixed-size model takes (or shrunk to a spec's ``max_side``):
    the model's output has the new size, not the file's. The message names the file and both sizes."""
