"""Who may use the API: Django model permissions, checked per action (tasks.authz).

Anonymous access is the operator's explicit choice (TASKS_API_ALLOW_ANONYMOUS); otherwise
every request needs a logged-in user or a token, and each action its permission.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import BasePermission

from tasks import authz

# The permission each view action needs (tasks.authz names them).
ACTION_NEEDS = {
    "list": "view", "retrieve": "view", "history": "view", "stats": "view",
    "create": "add", "cancel": "cancel", "retry": "retry",
}


class ApiAccess(BasePermission):
    """Authenticated users only, unless TASKS_API_ALLOW_ANONYMOUS is set.

    Read at request time (not import time) so the setting can be changed in tests.
    """

    def has_permission(self, request, view) -> bool:
        if getattr(settings, "TASKS_API_ALLOW_ANONYMOUS", False):
            return True
        return bool(request.user and request.user.is_authenticated)


class TaskPermissions(ApiAccess):
    """ApiAccess, then the action's model permission (view, add, cancel, retry)."""

    message = "You do not have permission to do this with tasks."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        action = ACTION_NEEDS.get(getattr(view, "action", None) or "", "view")
        if authz.may(request.user, action):
            return True
        self.message = (f"You do not have permission to {action} tasks "
                        f"(tasks.{authz.ACTION_PERMISSIONS[action]}).")
        return False
