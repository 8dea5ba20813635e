"""Plain views: /health for load balancers and probes, /favicon.ico for browsers."""

from pathlib import Path

from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

FAVICON = (Path(__file__).resolve().parent / "static" / "tasks" / "favicon.ico").read_bytes()


@require_GET
@cache_control(public=True, max_age=86400)
def favicon(request):
    """The icon browsers ask for on every origin (the admin links none of its own)."""
    return HttpResponse(FAVICON, content_type="image/x-icon")


@require_GET
def health(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return JsonResponse({"status": "unhealthy", "database": "unreachable",
                             "reason": str(exc).strip().splitlines()[0][:200]}, status=503)
    return JsonResponse({"status": "healthy", "database": "connected"})
