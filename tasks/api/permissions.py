"""Who may use the API: authenticated users, or anyone when the operator allows it."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import BasePermission


class ApiAccess(BasePermission):
    """Authenticated users only, unless TASKS_API_ALLOW_ANONYMOUS is set.

    Read at request time (not import time) so the setting can be changed in tests.
    """

    def has_permission(self, request, view) -> bool:
        if getattr(settings, "TASKS_API_ALLOW_ANONYMOUS", False):
            return True
        return bool(request.user and request.user.is_authenticated)
