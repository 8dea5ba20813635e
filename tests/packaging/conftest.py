from __future__ import annotations

import pytest

from tests.support import venvs


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """The checkout's wheel, built once per test run."""
    return venvs.build_wheel(tmp_path_factory.mktemp("wheel"))
