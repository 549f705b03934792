"""The two value checks every config-facing function needs: an integer that is not a bool, a finite number
that is not a bool (YAML's `true` is an int to Python)."""

from __future__ import annotations

import math


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
