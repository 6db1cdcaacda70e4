"""Measurements for the lessons: quantization error statistics and format comparisons."""

from .error import compare_formats, error_stats, formats_with_bits, sqnr_db

__all__ = ["compare_formats", "error_stats", "formats_with_bits", "sqnr_db"]
