"""GGML / GGUF block formats, byte-exact with llama.cpp's reference quantizers."""

from . import iq1, iq2, iq3, iquants, kquants_type0, kquants_type1, legacy, ternary  # noqa: F401  (registers the formats)
from .common import GGMLFormat

__all__ = ["GGMLFormat"]
