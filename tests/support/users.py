"""Users with exactly the task permissions a test names (tasks.authz codenames)."""

from __future__ import annotations

from django.contrib.auth.models import Permission

from tasks import authz

# What an ordinary API client is given: its own tasks, every type.
CLIENT = (authz.VIEW, authz.ADD, authz.CANCEL, authz.RETRY, authz.ENQUEUE_ANY)
# An operator: every task of everybody.
OPERATOR = (*CLIENT, authz.VIEW_ALL, authz.DELETE)
# Who steers queues.
QUEUES = (authz.VIEW_QUEUE, authz.CHANGE_QUEUE)
# Who manages schedules.
SCHEDULES = (authz.VIEW_SCHEDULE, authz.ADD_SCHEDULE, authz.CHANGE_SCHEDULE,
             authz.DELETE_SCHEDULE)


def grant(user, *codenames: str):
    """Give `user` these tasks.* permissions (creating type permissions as needed)."""
    types = [c.removeprefix(authz.TYPE_PREFIX) for c in codenames
             if c.startswith(authz.TYPE_PREFIX)]
    if types:
        authz.ensure_type_permissions(types)
    perms = list(Permission.objects.filter(content_type__app_label=authz.APP,
                                           codename__in=codenames))
    missing = set(codenames) - {p.codename for p in perms}
    assert not missing, f"no such permissions: {missing}"
    user.user_permissions.add(*perms)
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    return user
