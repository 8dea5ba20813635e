"""Who may do what with tasks: Django model permissions, owners, and task types.

The API, the admin, the live view and the dashboard all ask here, so one user gets the
same answer everywhere:

- `tasks.view_task` lists and reads tasks; `tasks.add_task` submits them; `cancel_task`
  and `retry_task` steer them; `delete_task` deletes finished ones.
- Without `tasks.view_all_tasks` a user sees and steers only the tasks they own; other
  tasks do not exist for them (404, never 403, so ids do not leak).
- `tasks.view_queue` lists queues; `tasks.change_queue` pauses, resumes and limits them.
  `tasks.view_schedule`, `add_schedule`, `change_schedule` (also pause, resume, run now)
  and `delete_schedule` do the same for schedules.
- Submitting a task of type T also needs `tasks.enqueue_type_T` (created for every
  registered type by `migrate`) or `tasks.enqueue_any_type`, so a type such as `run_query`
  can be given to a few.

Superusers hold every permission. Anonymous API access (TASKS_API_ALLOW_ANONYMOUS, an
operator's explicit choice) acts with every permission.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

APP = "tasks"
VIEW = "view_task"
ADD = "add_task"
CANCEL = "cancel_task"
RETRY = "retry_task"
DELETE = "delete_task"
VIEW_ALL = "view_all_tasks"
ENQUEUE_ANY = "enqueue_any_type"
TYPE_PREFIX = "enqueue_type_"
# Queues and schedules: Django's model permissions of Queue and Schedule.
VIEW_QUEUE = "view_queue"
CHANGE_QUEUE = "change_queue"  # pause, resume, limits
VIEW_SCHEDULE = "view_schedule"
ADD_SCHEDULE = "add_schedule"
CHANGE_SCHEDULE = "change_schedule"  # also pause, resume, run now
DELETE_SCHEDULE = "delete_schedule"
CODENAME_MAX = 100  # django.contrib.auth Permission.codename

ACTION_PERMISSIONS = {"view": VIEW, "add": ADD, "cancel": CANCEL, "retry": RETRY,
                      "delete": DELETE}


def _anonymous_allowed(user: Any) -> bool:
    return (not getattr(user, "is_authenticated", False)
            and getattr(settings, "TASKS_API_ALLOW_ANONYMOUS", False))


def has(user: Any, codename: str) -> bool:
    """True if the user holds tasks.<codename> (or is let in anonymously by the operator)."""
    if user is None:
        return False
    if _anonymous_allowed(user):
        return True
    return bool(user.is_active and user.has_perm(f"{APP}.{codename}"))


def may(user: Any, action: str) -> bool:
    """May the user do `action` (view, add, cancel, retry, delete) to tasks at all?"""
    return has(user, ACTION_PERMISSIONS[action])


def sees_all(user: Any) -> bool:
    return has(user, VIEW_ALL)


def owner_scope(user: Any) -> int | None:
    """The owner id a user's reads are limited to, or None when they see every task."""
    return None if sees_all(user) else getattr(user, "pk", None) or 0


def visible(queryset: QuerySet, user: Any) -> QuerySet:
    """The tasks of `queryset` the user may see (all, or their own)."""
    scope = owner_scope(user)
    return queryset if scope is None else queryset.filter(owner_id=scope)


def can_see(user: Any, task: Any) -> bool:
    scope = owner_scope(user)
    return scope is None or task.owner_id == scope


def type_codename(type_name: str) -> str | None:
    """The permission codename for enqueueing one type (None if the name is too long)."""
    codename = f"{TYPE_PREFIX}{type_name}"
    return codename if len(codename) <= CODENAME_MAX else None


def may_enqueue(user: Any, type_name: str) -> bool:
    """May the user submit a task of this type? (add_task, and the type's permission.)"""
    if not may(user, "add"):
        return False
    if has(user, ENQUEUE_ANY):
        return True
    codename = type_codename(type_name) if isinstance(type_name, str) else None
    return codename is not None and has(user, codename)


def refused_types(user: Any, type_names: Iterable[Any]) -> list[str]:
    """The distinct registered types among `type_names` the user may not submit (unknown
    ones are left to enqueue's own validation, which names them)."""
    from plugins import registry

    known = set(registry.types())
    refused = []
    for name in dict.fromkeys(t for t in type_names if isinstance(t, str) and t in known):
        if not may_enqueue(user, name):
            refused.append(name)
    return refused


def ensure_type_permissions(type_names: Iterable[str]) -> int:
    """Create the enqueue permission of each type that lacks one; returns how many."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from tasks.models import Task

    content_type = ContentType.objects.get_for_model(Task)
    existing = set(Permission.objects.filter(content_type=content_type,
                                             codename__startswith=TYPE_PREFIX)
                   .values_list("codename", flat=True))
    missing = [(name, codename) for name in type_names
               if (codename := type_codename(name)) and codename not in existing]
    Permission.objects.bulk_create([
        Permission(content_type=content_type, codename=codename,
                   name=f"Can enqueue {name} tasks"[:255])
        for name, codename in missing
    ])
    return len(missing)
