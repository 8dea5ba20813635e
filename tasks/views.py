"""Plain views: /health for load balancers and probes."""

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET


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
