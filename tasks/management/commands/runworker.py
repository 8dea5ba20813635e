"""manage.py runworker: claim and run tasks until SIGTERM/SIGINT."""

import logging

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError

from plugins import registry
from plugins.query_checks import query_database_problems
from tasks.conf import TASKS_CHECKS
from tasks.worker import Worker

logger = logging.getLogger("tasks.worker")


class Command(BaseCommand):
    help = "Run a Task Service worker: claims due tasks and runs them through their plugins."
    # The checks of what a worker uses. The URL, admin, template and command checks
    # import the URLconf, the admin, every template library and the migration machinery,
    # which a worker never uses but would keep in memory (~15 MB).
    requires_system_checks = [Tags.models, Tags.compatibility, Tags.caches, Tags.database,
                              Tags.signals, Tags.async_support, TASKS_CHECKS]

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", "-c", type=int, default=None,
                            help="Tasks run at once (default TASKS_WORKER_CONCURRENCY).")
        parser.add_argument("--queues", "-q", default="",
                            help="Comma-separated queues to serve (default: every queue).")
        parser.add_argument("--batch", action="store_true",
                            help="Exit once nothing is due and nothing is running.")
        parser.add_argument("--max-tasks", type=int, default=None,
                            help="Exit after claiming this many tasks (and finishing them).")
        parser.add_argument("--no-listen", action="store_true",
                            help="Poll only, no LISTEN (e.g. behind PgBouncer transaction "
                                 "pooling); same as TASKS_WORKER_LISTEN=0.")
        parser.add_argument("--worker-id", default=None,
                            help="Worker id (default host:pid:random).")

    def handle(self, *args, **options):
        if options["concurrency"] is not None and options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        if options["max_tasks"] is not None and options["max_tasks"] < 1:
            raise CommandError("--max-tasks must be at least 1")
        # run_query executes its submitters' SQL: never under a role that could do harm.
        problems = query_database_problems()
        if problems:
            raise CommandError("run_query's database is not safe; the worker will not start:\n"
                               + "\n".join(f"  - {p}" for p in problems))
        for type_name, reason in registry.unavailable().items():
            # Left for the workers that can run them; the dashboard counts them if none can.
            logger.info("not claiming %s tasks here: %s", type_name, reason,
                        extra={"action": "type_unavailable", "task_type": type_name})
        queues = [q.strip() for q in options["queues"].split(",") if q.strip()]
        worker = Worker(
            concurrency=options["concurrency"],
            queues=queues,
            batch=options["batch"],
            max_tasks=options["max_tasks"],
            listen=False if options["no_listen"] else None,
            worker_id=options["worker_id"],
        )
        if worker.run():
            raise CommandError(f"the worker stopped because its {worker.died} thread died")
