"""A real database and LOGIN role for run_query, made the way the README tells operators to.

The role is not a superuser and may CONNECT only to its own database, where it reads a
sample table (and may write a scratch table, so READ ONLY is what stops writes there).
The test database stops granting CONNECT to PUBLIC while it exists, as in production.
Names derive from the test database's, so engineers sharing a server do not collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from django.db import connection, connections
from django.test import override_settings

from taskservice.env import parse_database_url
from tests.support.processes import database_url

ALIAS = "query_under_test"
SAMPLE_ROWS = 30


@dataclass(frozen=True)
class QueryDatabase:
    name: str  # the database, and the role of the same name
    url: str  # as the role
    admin_url: str  # as the service's superuser, on the query database
    service_admin_url: str  # as the service's superuser, on the service's (test) database

    @property
    def role(self) -> str:
        return self.name

    def admin(self, *statements: str, service: bool = False) -> list:
        """Run statements as the superuser; the last one's rows (if any)."""
        rows: list = []
        with psycopg.connect(self.service_admin_url if service else self.admin_url,
                             autocommit=True) as conn:
            for statement in statements:
                cursor = conn.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def active_statements(self) -> list[str]:
        """Statements of this role still running on the server."""
        return [q for (q,) in self.admin(
            f"SELECT query FROM pg_stat_activity WHERE usename = '{self.role}' "
            "AND state = 'active'")]

    def sessions(self) -> int:
        return self.admin(f"SELECT count(*) FROM pg_stat_activity WHERE usename = "
                          f"'{self.role}'")[0][0]


def _drop(service_admin_url: str, name: str) -> None:
    with psycopg.connect(service_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = %s", [name])
            conn.execute(f'DROP OWNED BY "{name}"')  # grants in the service's database
            conn.execute(f'DROP ROLE "{name}"')


@contextmanager
def query_database() -> Iterator[QueryDatabase]:
    s = connection.settings_dict
    service_db = s["NAME"]
    name = f"{service_db}_runq"
    service_admin_url = database_url(name=service_db)
    db = QueryDatabase(name=name, url=database_url(user=name, name=name),
                       admin_url=database_url(name=name),
                       service_admin_url=service_admin_url)
    _drop(service_admin_url, name)  # left over by an interrupted run
    db.admin(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE',
             f'CREATE DATABASE "{name}"',
             f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC',
             f'GRANT CONNECT ON DATABASE "{name}" TO "{name}"',
             f'REVOKE CONNECT ON DATABASE "{service_db}" FROM PUBLIC', service=True)
    db.admin("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)",
             f"INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, {SAMPLE_ROWS}) i",
             "CREATE TABLE scratch (id integer)",
             f'GRANT SELECT ON items TO "{name}"',
             f'GRANT SELECT, INSERT, UPDATE, DELETE ON scratch TO "{name}"')
    try:
        yield db
    finally:
        try:
            _drop(service_admin_url, name)
        finally:
            with psycopg.connect(service_admin_url, autocommit=True) as conn:
                conn.execute(f'GRANT CONNECT ON DATABASE "{service_db}" TO PUBLIC')


@contextmanager
def configured(url: str, alias: str = ALIAS) -> Iterator[str]:
    """run_query configured in this process on `url` under `alias`, as settings would."""
    connections.settings[alias] = connections.configure_settings(
        {"default": {}, alias: parse_database_url(url)})[alias]
    try:
        with override_settings(TASKS_QUERY_DATABASE=alias):
            yield alias
    finally:
        del connections.settings[alias]


@pytest.fixture(scope="module")
def query_db(django_db_setup) -> Iterator[QueryDatabase]:
    """A run_query database and role for the module's tests."""
    with query_database() as db:
        yield db


@pytest.fixture
def run_query_on(query_db, transactional_db) -> Iterator[QueryDatabase]:
    """run_query configured on `query_db` in this process for one test."""
    with configured(query_db.url):
        yield query_db
