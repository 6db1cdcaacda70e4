"""placeholder (being written)."""
