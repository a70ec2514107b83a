"""The one exception type for bad input data (files, keys, ids)."""
from __future__ import annotations


class DataError(ValueError):
    """Bad or missing input data; the message names the file, key or id at fault."""
