"""Is run_query's role safe? One verification, used by `runworker` and `check --deploy`.

run_query runs whatever SQL a task's submitter writes, so the role it runs as is the
boundary: it must not be a superuser or hold the roles that reach the server's files,
programs or other sessions, must not read the service's own tables, and its database must
not offer a way out (dblink, postgres_fdw).
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.checks import Error, Tags
from django.db import connections

from plugins.query import SETTING, URL_SETTING, configuration_problem, connect

# Members of these reach beyond the database: files, programs, other sessions.
DANGEROUS_ROLES = ("pg_read_server_files", "pg_write_server_files",
                   "pg_execute_server_program", "pg_signal_backend")
# Attributes that amount to more power than reading (CREATEROLE can grant the roles above).
DANGEROUS_ATTRIBUTES = {"rolsuper": "a superuser", "rolcreaterole": "allowed to CREATEROLE",
                        "rolreplication": "a REPLICATION role"}
ESCAPE_EXTENSIONS = ("dblink", "postgres_fdw")

_IDENTITY = ("SELECT current_user, current_database(), "
             "(SELECT system_identifier FROM pg_control_system())")


def query_database_problems(alias: str | None = None) -> list[str]:
    """Every reason run_query's database or role is unsafe; [] when safe or not configured.

    `alias` defaults to settings.TASKS_QUERY_DATABASE; an unset setting means run_query is
    off, which is safe.
    """
    if alias is None:
        alias = getattr(settings, SETTING, "") or ""
        if not alias:
            return []
    problem = configuration_problem(alias)
    if problem:
        return [problem]
    wrapper = connections.create_connection(alias)
    try:
        with connect(wrapper) as raw, raw.cursor() as cursor:
            cursor.execute(_IDENTITY)
            role, dbname, system_id = cursor.fetchone()
            problems = _role_problems(cursor, role)
            cursor.execute("SELECT extname FROM pg_extension WHERE extname = ANY(%s) "
                           "ORDER BY extname", [list(ESCAPE_EXTENSIONS)])
            problems += [f"the query database {dbname!r} has the {name} extension: it reaches "
                         f"other databases (DROP EXTENSION {name})"
                         for (name,) in cursor.fetchall()]
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return [f"cannot verify the query database ({alias!r}): {exc}".strip()]
    try:
        problems += _service_problems(role, dbname, system_id)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"cannot verify role {role!r} against the service's database: {exc}")
    return [f"run_query role {role!r}: {p}" for p in problems]


def _role_problems(cursor, role: str) -> list[str]:
    attributes = list(DANGEROUS_ATTRIBUTES)
    cursor.execute(f"SELECT {', '.join(attributes)} FROM pg_roles WHERE rolname = current_user")
    flags = dict(zip(attributes, cursor.fetchone(), strict=True))
    problems = [f"is {label}" for attr, label in DANGEROUS_ATTRIBUTES.items() if flags[attr]]
    if flags["rolsuper"]:
        return problems  # a superuser is a member of everything; say it once
    cursor.execute("SELECT name FROM unnest(%s::text[]) AS name "
                   "WHERE pg_has_role(current_user, name, 'MEMBER') ORDER BY name",
                   [list(DANGEROUS_ROLES)])
    problems += [f"is a member of {name} (REVOKE {name} FROM {role})"
                 for (name,) in cursor.fetchall()]
    return problems


def _service_problems(role: str, query_db: str, query_system_id) -> list[str]:
    """Checked from the service's own connection: what `role` may do there."""
    with connections["default"].cursor() as cursor:
        cursor.execute(_IDENTITY)
        _, service_db, system_id = cursor.fetchone()
        if system_id == query_system_id and service_db == query_db:
            return [f"its database is the service's own database {service_db!r}; run_query "
                    f"needs a database of its own ({URL_SETTING})"]
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            return []  # another server: the role does not exist beside the service's data
        problems = []
        cursor.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT')",
                       [role])
        if cursor.fetchone()[0]:
            problems.append(
                f"may CONNECT to the service's database {service_db!r} (REVOKE CONNECT ON "
                f"DATABASE {service_db} FROM PUBLIC, {role}; GRANT it to the service's role)")
        cursor.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%%' "
            "AND has_any_column_privilege(%s, c.oid, 'SELECT') ORDER BY 1", [role])
        tables = [name for (name,) in cursor.fetchall()]
        if tables:
            shown = ", ".join(tables[:10]) + (f" and {len(tables) - 10} more"
                                              if len(tables) > 10 else "")
            problems.append(f"may read the service's tables in {service_db!r}: {shown}")
        return problems


def register() -> None:
    """Add the deploy check (from AppConfig.ready)."""
    checks.register(query_database_check, Tags.security, deploy=True)


def query_database_check(app_configs, **kwargs) -> list[Error]:
    """`check --deploy`: run_query's role, verified as the worker does at start-up."""
    return [Error(problem, hint="See the README: Security model, run_query.",
                  id="tasks.E101")
            for problem in query_database_problems()]
