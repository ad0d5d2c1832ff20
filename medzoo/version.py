"""The version of medzoo: its own module, so code below the public face can read it without importing the face."""

__version__ = "0.1.0"
