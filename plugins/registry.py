"""Which plugin runs each task type.

Three sources, later ones winning: the built-ins below (with those the application adds,
add_builtin: tasks/apps.py adds the django.tasks adapter's `django_task`), the Python entry
point group `taskservice.plugins` (third-party packages), and settings (TASKS_PLUGINS),
which maps a type name to a plugin (a built-in name or a dotted path) with options. The
registry is frozen once loaded; an unknown type is a clear error at enqueue time. A worker
claims only runnable_types(): the types whose plugin is available in its process
(Plugin.unavailable_reason() is None).
"""

from __future__ import annotations

import logging
from importlib import import_module
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from plugins.base import NotRunnableHere, PayloadError, Plugin
from tasks.exceptions import PluginConfigurationError, UnknownTaskType

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "taskservice.plugins"

BUILTINS: dict[str, str] = {
    "send_email": "plugins.email.SendEmail",
    "run_query": "plugins.query.RunQuery",
    "simulate": "plugins.simulate.Simulate",
    "noop": "plugins.simulate.Noop",
}

_plugins: MappingProxyType[str, Plugin] = MappingProxyType({})


def add_builtin(type_name: str, path: str) -> None:
    """A task type the application ships beside the built-ins, by dotted path: in every
    registry built from now on. (Its wing names it here, so this layer imports no wing.)"""
    BUILTINS[type_name] = path


def import_string(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise PluginConfigurationError(f"{path!r} is not a dotted path to a plugin class")
    try:
        return getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PluginConfigurationError(f"Cannot import plugin {path!r}: {exc}") from exc


def _instantiate(type_name: str, target: Any, options: dict[str, Any]) -> Plugin:
    if isinstance(target, str):
        target = import_string(BUILTINS.get(target, target))
    if isinstance(target, type) and issubclass(target, Plugin):
        try:
            plugin = target(**options)
        except (TypeError, ValueError, PayloadError) as exc:
            raise PluginConfigurationError(f"Bad options for plugin {type_name!r}: {exc}") from exc
    elif callable(target):
        # A plain function run(payload, ctx) is a plugin too.
        plugin = _FunctionPlugin(target, **options)
    else:
        raise PluginConfigurationError(
            f"Plugin for {type_name!r} is not a Plugin class: {target!r}")
    plugin.name = type_name
    return plugin


class _FunctionPlugin(Plugin):
    def __init__(self, func, **options):
        super().__init__(**options)
        self.func = func
        self.description = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""

    def run(self, payload, ctx):
        return self.func(payload, ctx)


def build(config: dict[str, Any] | None = None, *, use_entry_points: bool = True) -> dict:
    """Build the type -> plugin mapping from built-ins, entry points and `config`."""
    specs: dict[str, tuple[Any, dict]] = {name: (name, {}) for name in BUILTINS}
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                specs[ep.name] = (ep.load(), {})
            except Exception as exc:  # a broken third-party package must name itself
                raise PluginConfigurationError(
                    f"Entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP} "
                    f"failed to load: {exc}"
                ) from exc
    for type_name, spec in (config or {}).items():
        if isinstance(spec, str):
            specs[type_name] = (spec, {})
        elif isinstance(spec, dict):
            options = dict(spec)
            target = options.pop("plugin", type_name)
            specs[type_name] = (target, options)
        else:
            raise PluginConfigurationError(
                f"TASKS_PLUGINS[{type_name!r}] must be a plugin path or an object with 'plugin'"
            )
    return {name: _instantiate(name, target, opts) for name, (target, opts) in specs.items()}


def load(config: dict[str, Any] | None = None) -> None:
    """(Re)build and freeze the registry; called from AppConfig.ready()."""
    global _plugins
    if config is None:
        from django.conf import settings

        config = getattr(settings, "TASKS_ENGINE", {}).get("PLUGINS", {})
    _plugins = MappingProxyType(build(config))
    logger.debug("plugins loaded: %s", ", ".join(sorted(_plugins)))


def get(type_name: str) -> Plugin:
    try:
        return _plugins[type_name]
    except KeyError:
        raise UnknownTaskType(type_name, types()) from None


def types() -> list[str]:
    """Every registered type: what may be enqueued (each plugin's validate decides)."""
    return sorted(_plugins)


def all_plugins() -> MappingProxyType[str, Plugin]:
    return _plugins


def _unavailable_reason(plugin: Plugin) -> str | None:
    try:
        reason = plugin.unavailable_reason()
    except Exception as exc:  # noqa: BLE001 - a plugin's own check must not stop a worker
        return f"its availability check raised {type(exc).__name__}: {exc}"
    return None if reason is None else (str(reason) or "unavailable")


def unavailable() -> dict[str, str]:
    """{type: why this process cannot run it} for every registered type it cannot run."""
    return {name: reason for name, plugin in _plugins.items()
            if (reason := _unavailable_reason(plugin)) is not None}


def runnable_types() -> list[str]:
    """The types a worker in this process claims: those whose plugin is available here."""
    left_out = unavailable()
    return sorted(name for name in _plugins if name not in left_out)


def runnable(type_name: str) -> Plugin:
    """The plugin that runs a claimed task of `type_name`. NotRunnableHere when this process
    cannot run the type (another worker may: the task is handed back, not failed);
    UnknownTaskType when no plugin has the name."""
    plugin = get(type_name)
    if (reason := _unavailable_reason(plugin)) is not None:
        raise NotRunnableHere(reason)
    return plugin
