"""emforge: build and refine atomic protein models in cryo-EM density maps."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emforge")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
