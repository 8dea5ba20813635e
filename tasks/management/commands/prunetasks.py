"""manage.py prunetasks: delete finished tasks past their retention, now, by hand."""

from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError

from tasks.maintenance.pruner import Pruner, PrunerConfig
from tasks.models import FINISHED_STATUSES

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '7d', '2w' or plain seconds, as seconds (> 0)."""
    match = _DURATION.match(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise CommandError(f"--older-than must be a positive duration such as 90s, 15m, 12h, "
                           f"7d or 2w; got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class Command(BaseCommand):
    help = ("Delete finished tasks and their history past their retention (the settings "
            "TASKS_RETENTION_*), or past --older-than; --dry-run only counts.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Count what would be deleted; delete nothing.")
        parser.add_argument("--older-than", metavar="DURATION", default=None,
                            help="Finished longer ago than this (90s, 15m, 12h, 7d, 2w), "
                                 "instead of the configured retention.")
        parser.add_argument("--status", action="append", default=[], metavar="STATUS",
                            help="Only this final status (succeeded, failed, cancelled); "
                                 "repeatable. Default: all three.")

    def handle(self, *args, dry_run=False, older_than=None, status=(), **options):
        for name in status:
            if name not in FINISHED_STATUSES:
                raise CommandError(f"--status must be one of {', '.join(FINISHED_STATUSES)}; "
                                   f"got {name!r}")
        statuses = list(dict.fromkeys(status)) or list(FINISHED_STATUSES)
        base = PrunerConfig.from_settings()
        if older_than is not None:
            age = parse_duration(older_than)
            retention = {s: age for s in statuses}
        else:
            retention = {s: base.retention.get(s, 0) for s in statuses}
        pruner = Pruner(PrunerConfig.from_settings(retention=retention, rest=0))
        kept = [s for s in statuses if not retention[s] > 0]
        result = pruner.count() if dry_run else _run(pruner)
        verb = "would delete" if dry_run else "deleted"
        for name in statuses:
            if name in kept:
                self.stdout.write(f"{name}: kept forever (its retention is 0)")
                continue
            self.stdout.write(f"{name}: {verb} {result.tasks.get(name, 0)} task(s) and "
                              f"{result.history.get(name, 0)} history row(s), finished more "
                              f"than {_human(retention[name])} ago")
        self.stdout.write(f"total: {verb} {result.total} task(s)"
                          + (" (dry run: nothing was deleted)" if dry_run else ""))


def _run(pruner: Pruner):
    pruner.run_once()
    return pruner.last


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
