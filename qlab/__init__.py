"""qlab: a workbench for learning and exploring neural-network quantization."""

from . import formats
from .formats import roundtrip

__version__ = "0.1.0"
__all__ = ["formats", "roundtrip", "__version__"]
