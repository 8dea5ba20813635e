"""Field errors as one line of text, e.g. {'payload': {'to': ['bad']}} -> 'payload.to: bad'.

Plain Python: the engine's exceptions and the console CLI (which has no Django) word their
errors with it, so both say the same."""

from __future__ import annotations

from typing import Any


def flatten(errors: Any, prefix: str = "") -> str:
    if isinstance(errors, dict):
        return "; ".join(flatten(v, f"{prefix}.{k}" if prefix else str(k))
                         for k, v in errors.items())
    if isinstance(errors, (list, tuple)):
        return f"{prefix}: {' '.join(map(str, errors))}" if prefix else " ".join(map(str, errors))
    return f"{prefix}: {errors}" if prefix else str(errors)
