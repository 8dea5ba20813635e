"""Settings of the test run: the service's own, with the development defaults that every
process the tests start uses too (console mail, plain HTTP, static files served from the
app folders), and the test client's host name."""

import os

os.environ.setdefault("DEBUG", "1")

from taskservice.settings import *  # noqa: E402, F403
from taskservice.settings import ALLOWED_HOSTS  # noqa: E402

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
