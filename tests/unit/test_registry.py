"""The plugin registry: built-ins, settings (built-in name or dotted path, with options),
third-party entry points, and clear errors for everything that cannot be loaded."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from plugins import registry
from plugins.base import NotRunnableHere, Plugin
from plugins.query import RunQuery
from plugins.simulate import Noop, Simulate
from tasks.exceptions import InvalidTask, PluginConfigurationError, UnknownTaskType
from tests.support.plugins import TEST_PLUGINS, Boom
from tests.support.query_db import configured


class Strict(Plugin):
    """A plugin whose options are checked by its signature."""

    def __init__(self, size: int = 1):
        super().__init__(size=size)
        self.size = size

    def run(self, payload, ctx):
        return self.size


def shout(payload, ctx):
    """Upper-cases the payload's text."""
    return payload["text"].upper()


NOT_A_PLUGIN = 42
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def restore_registry():
    """Tests that reload the registry put the session's plugins back afterwards."""
    yield
    registry.load({**settings.TASKS_ENGINE.get("PLUGINS", {}), **TEST_PLUGINS})


def test_builtins_are_present():
    plugins = registry.build({}, use_entry_points=False)
    assert isinstance(plugins["send_email"], Plugin)
    assert type(plugins["run_query"]) is RunQuery
    assert type(plugins["simulate"]) is Simulate
    assert type(plugins["noop"]) is Noop
    assert {name: p.name for name, p in plugins.items()} == {n: n for n in plugins}


def test_loaded_registry_has_builtins_and_test_plugins():
    assert {"send_email", "run_query", "simulate", "noop", "count", "block", "boom"} <= set(
        registry.types()
    )
    assert registry.types() == sorted(registry.types())
    assert registry.get("boom").name == "boom"


def test_type_name_mapped_to_a_builtin_with_options():
    plugins = registry.build(
        {"run_query": {"plugin": "simulate", "failure_rate": 0.2, "duration": 3}},
        use_entry_points=False,
    )
    plugin = plugins["run_query"]
    assert type(plugin) is Simulate
    assert plugin.name == "run_query"
    assert plugin.defaults == {"duration": 3.0, "failure_rate": 0.2, "timeout_rate": 0.0}
    # The mapping does not disturb the built-in it borrows from.
    assert plugins["simulate"].defaults["failure_rate"] == 0.0


def test_options_for_a_builtin_without_plugin_key():
    plugins = registry.build({"run_query": {"max_rows": 7}}, use_entry_points=False)
    assert type(plugins["run_query"]) is RunQuery
    assert plugins["run_query"].max_rows == 7


def test_type_name_mapped_to_a_dotted_path():
    plugins = registry.build(
        {
            "explode": "tests.support.plugins.Boom",
            "sized": {"plugin": "tests.unit.test_registry.Strict", "size": 5},
            "shout": "tests.unit.test_registry.shout",
        },
        use_entry_points=False,
    )
    assert type(plugins["explode"]) is Boom
    assert plugins["explode"].name == "explode"
    assert plugins["sized"].size == 5
    # A plain function is wrapped into a plugin, its docstring becoming the description.
    assert plugins["shout"].run({"text": "hi"}, None) == "HI"
    assert plugins["shout"].description == "Upper-cases the payload's text."


def test_settings_plugins_are_used_by_load(restore_registry):
    config = {**settings.TASKS_ENGINE, "PLUGINS": {"flaky": {"plugin": "simulate",
                                                             "failure_rate": 0.5}}}
    with override_settings(TASKS_ENGINE=config):
        registry.load()
    assert registry.get("flaky").defaults["failure_rate"] == 0.5
    assert "boom" not in registry.types()  # load() replaced the mapping wholesale


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("tests.support.plugins.DoesNotExist", "tests.support.plugins.DoesNotExist"),
        ("no_such_module_xyz.Plugin", "no_such_module_xyz.Plugin"),
        ("nodots", "'nodots' is not a dotted path"),
    ],
)
def test_bad_dotted_path_names_the_path(path, fragment):
    with pytest.raises(PluginConfigurationError) as excinfo:
        registry.build({"mine": path}, use_entry_points=False)
    assert fragment in str(excinfo.value)


def test_target_that_is_not_a_plugin_is_rejected():
    with pytest.raises(PluginConfigurationError, match="'mine' is not a Plugin class"):
        registry.build({"mine": "tests.unit.test_registry.NOT_A_PLUGIN"},
                       use_entry_points=False)


def test_bad_option_names_are_rejected_naming_the_type():
    with pytest.raises(PluginConfigurationError) as excinfo:
        registry.build({"sized": {"plugin": "tests.unit.test_registry.Strict", "colour": 1}},
                       use_entry_points=False)
    assert "Bad options for plugin 'sized'" in str(excinfo.value)
    assert "colour" in str(excinfo.value)


def test_bad_option_values_are_a_configuration_error():
    with pytest.raises(PluginConfigurationError, match="failure_rate"):
        registry.build({"run_query": {"plugin": "simulate", "failure_rate": 2}},
                       use_entry_points=False)


def test_bad_option_type_is_a_configuration_error():
    with pytest.raises(PluginConfigurationError, match="max_rows"):
        registry.build({"run_query": {"max_rows": "lots"}}, use_entry_points=False)


@pytest.mark.parametrize("spec", [42, ["simulate"], None])
def test_spec_must_be_a_path_or_an_object(spec):
    with pytest.raises(PluginConfigurationError, match=r"TASKS_PLUGINS\['mine'\]"):
        registry.build({"mine": spec}, use_entry_points=False)


def test_configuration_errors_are_improperly_configured():
    from django.core.exceptions import ImproperlyConfigured

    assert issubclass(PluginConfigurationError, ImproperlyConfigured)


def test_unknown_type_lists_the_known_types():
    with pytest.raises(UnknownTaskType) as excinfo:
        registry.get("no_such_type")
    err = excinfo.value
    assert isinstance(err, InvalidTask)
    assert err.type_name == "no_such_type"
    assert err.known == registry.types()
    message = err.errors["type"][0]
    assert "Unknown task type 'no_such_type'" in message
    for name in ("send_email", "run_query", "simulate"):
        assert name in message


def test_registry_mapping_is_read_only():
    plugins = registry.all_plugins()
    with pytest.raises(TypeError):
        plugins["evil"] = Boom()  # type: ignore[index]
    with pytest.raises(TypeError):
        del plugins["simulate"]  # type: ignore[attr-defined]
    assert "evil" not in registry.types()


# --- what a worker in this process can run -----------------------------------------


class NeedsLicence(Plugin):
    """Runs only where its `licence` option is set."""

    def unavailable_reason(self):
        return None if self.options.get("licence") else "no licence on this machine"

    def run(self, payload, ctx):
        return "ran"


class BrokenCheck(Plugin):
    def unavailable_reason(self):
        raise RuntimeError("cannot tell")


LICENSED = {"licensed": {"plugin": "tests.unit.test_registry.NeedsLicence", "licence": "x"},
            "unlicensed": "tests.unit.test_registry.NeedsLicence",
            "broken": "tests.unit.test_registry.BrokenCheck"}


def test_a_worker_runs_only_the_types_whose_plugin_is_available_here(restore_registry):
    registry.load({**TEST_PLUGINS, **LICENSED})
    with override_settings(TASKS_QUERY_DATABASE=""):  # no query database here
        assert set(registry.unavailable()) == {"unlicensed", "broken", "run_query"}
        assert registry.unavailable()["unlicensed"] == "no licence on this machine"
        assert "TASKS_QUERY_DATABASE_URL" in registry.unavailable()["run_query"]
        assert "RuntimeError: cannot tell" in registry.unavailable()["broken"]
        runnable = registry.runnable_types()
        assert runnable == sorted(set(registry.types()) - {"unlicensed", "broken",
                                                           "run_query"})
        assert {"licensed", "simulate", "noop", "django_task", "count"} <= set(runnable)
        # Every type may still be looked up (and validated at enqueue): types() has them.
        assert {"unlicensed", "broken", "run_query"} <= set(registry.types())
        assert registry.runnable("licensed").run({}, None) == "ran"
        for name in ("unlicensed", "broken", "run_query"):
            with pytest.raises(NotRunnableHere):
                registry.runnable(name)
        with pytest.raises(UnknownTaskType):
            registry.runnable("no_such_type")
    with configured("postgresql://reader@db.example.com:5432/reports"):
        assert "run_query" in registry.runnable_types()
        assert type(registry.runnable("run_query")) is RunQuery


def test_the_plugin_contract_is_the_documented_methods_and_no_others():
    # Whether a type runs here has one question, unavailable_reason(): the registry's.
    methods = {name for name, value in vars(Plugin).items()
               if callable(value) and not name.startswith("_")}
    assert methods == {"validate", "run", "unavailable_reason"}
    readme = README.read_text()
    assert all(f"{name}(" in readme for name in methods)


# --- third-party packages through the `taskservice.plugins` entry point group ---------


def _install_dist(root, name: str, entry_points: str, module_source: str | None = None):
    """A minimal installed distribution: importlib.metadata finds it on sys.path."""
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module_source is not None:
        (root / f"{name}.py").write_text(textwrap.dedent(module_source))


THIRD_PARTY = """
    from plugins.base import PayloadError, Plugin

    class Greet(Plugin):
        description = "Says hello"

        def run(self, payload, ctx):
            return f"hello {payload.get('who', 'world')}"

    def ping(payload, ctx):
        '''Answers pong.'''
        return "pong"
"""


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch):
    _install_dist(
        tmp_path, "acme_tasks_ep",
        """
        [taskservice.plugins]
        greet = acme_tasks_ep:Greet
        ping = acme_tasks_ep:ping

        [console_scripts]
        unrelated = acme_tasks_ep:ping
        """,
        THIRD_PARTY,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = registry.build({})
    assert plugins["greet"].run({"who": "ada"}, None) == "hello ada"
    assert plugins["greet"].name == "greet"
    assert plugins["ping"].run({}, None) == "pong"
    assert "unrelated" not in plugins
    assert "send_email" in plugins  # built-ins stay

    # Settings win over entry points: an operator can remap a third-party type.
    remapped = registry.build({"greet": {"plugin": "simulate", "duration": 0}})
    assert type(remapped["greet"]) is Simulate

    # Without entry points the third-party types are absent.
    assert "greet" not in registry.build({}, use_entry_points=False)


def test_entry_point_plugins_reach_the_loaded_registry(tmp_path, monkeypatch, restore_registry):
    _install_dist(tmp_path, "acme_tasks_live", """
        [taskservice.plugins]
        greet_live = acme_tasks_live:Greet
        """, THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load({})
    assert registry.get("greet_live").run({}, None) == "hello world"


def test_entry_point_that_is_not_a_plugin_names_the_type(tmp_path, monkeypatch):
    _install_dist(tmp_path, "acme_not_plugin", """
        [taskservice.plugins]
        notplugin = acme_not_plugin:VALUE
        """, "VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginConfigurationError, match="'notplugin' is not a Plugin class"):
        registry.build({})


def test_broken_entry_point_names_itself(tmp_path, monkeypatch):
    _install_dist(tmp_path, "acme_broken", """
        [taskservice.plugins]
        broken = acme_broken_missing_module:Thing
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginConfigurationError) as excinfo:
        registry.build({})
    message = str(excinfo.value)
    assert "'broken'" in message
    assert "acme_broken_missing_module:Thing" in message
    assert "taskservice.plugins" in message


def test_engine_settings_are_checked_with_named_problems():
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from tasks.conf import problems

    assert problems({"CONCURRENCY": 4, "POLL_INTERVAL": 2, "WORKER_LISTEN": False}) == []
    found = problems({"CONCURENCY": 4, "LEASE_SECONDS": 0.5, "WORKER_LISTEN": "yes",
                      "PLUGINS": []})
    assert found[0].startswith("unknown key 'CONCURENCY' (known: BACKOFF_BASE, ")
    assert found[1:] == ["LEASE_SECONDS must be at least 1.0, got 0.5",
                         "WORKER_LISTEN must be a bool, got 'yes'",
                         "PLUGINS must be an object, got []"]
    with override_settings(TASKS_ENGINE={"CONCURRENCY": 0}):
        with pytest.raises(SystemCheckError, match=r"tasks.E001.*CONCURRENCY must be at least 1"):
            call_command("check")
