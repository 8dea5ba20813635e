"""Typed readers for environment variables; used by settings.py only."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


_RATE_PERIODS = ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")


def env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate such as "6000/min"; "off" (or empty) means no limit (None)."""
    raw = os.environ.get(name, default).strip()
    if raw.lower() in ("", "off", "none", "0"):
        return None
    count, _, period = raw.partition("/")
    if not count.isascii() or not count.isdigit() or period not in _RATE_PERIODS:
        raise ImproperlyConfigured(
            f"{name} must look like 6000/min (a count per s, min, hour or day), or off; "
            f"got {raw!r}")
    return f"{int(count)}/{period}"


def env_json(name: str, default):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None


def env_values(spec: dict[str, tuple[str, type]]) -> dict[str, Any]:
    """The variables named in `spec` ({key: (variable, type)}) that are set, converted to
    their type; ranges are checked by whoever owns the values (tasks.conf)."""
    readers = {bool: lambda n: env_bool(n), int: lambda n: env_int(n, 0),
               float: lambda n: env_float(n, 0.0), dict: lambda n: env_json(n, {})}
    values: dict[str, Any] = {}
    for key, (name, kind) in spec.items():
        raw = os.environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        value = readers[kind](name)
        if kind is dict and not isinstance(value, dict):
            raise ImproperlyConfigured(f"{name} must be a JSON object, got {raw!r}")
        values[key] = value
    return values


def parse_database_url(url: str) -> dict:
    """Turn postgresql://user:pass@host:port/name?opt=v into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = unquote(parts.hostname or "") if parts.hostname else query.pop("host", "")
    query.pop("host", None)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
    }
