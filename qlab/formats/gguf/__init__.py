"""GGML / GGUF block formats, byte-exact with llama.cpp's reference quantizers."""

from . import iquants, kquants, kquants_qx, legacy, ternary  # noqa: F401  (registers the formats)
from .common import GGMLFormat

__all__ = ["GGMLFormat"]
