"""Turn attribute values read from files (numpy scalars and arrays, bytes, NaN) into JSON."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of ``value``; NaN/inf become the strings "NaN"/"Infinity"."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.item() if value.ndim == 0 else value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
