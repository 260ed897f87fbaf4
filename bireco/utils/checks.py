"""Type checks the settings' constructors share (a YAML `true` is an int to Python; it is not a count)."""

from __future__ import annotations

from typing import Any


def positive_int(value: Any) -> bool:
    """An int > 0 that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)
