from __future__ import annotations

import pytest

from tests.support import venvs


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("wheel")


@pytest.fixture(scope="session")
def wheel(build_dir):
    """The checkout's task-service wheel, built once per test run."""
    return venvs.build_wheel(build_dir)


@pytest.fixture(scope="session")
def cli_wheel(build_dir):
    """The checkout's task-service-cli wheel (cli/pyproject.toml), built once per run."""
    return venvs.build_wheel(build_dir, "task-service-cli")
