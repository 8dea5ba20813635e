"""Query strings the database cannot take are refused at the door.

PostgreSQL cannot store or compare text with a NUL character, and psycopg cannot encode
an unpaired surrogate: a filter, search or date value with one would fail its query with
a server error, wherever it is used (API filters, the admin's list filters and search,
its date drill-down). One check here answers 400 naming the parameter instead.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from tasks import jsonsafe


class RejectUnstorableQueryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for key, values in request.GET.lists():
            for text, what in [(key, "name"), *((value, "value") for value in values)]:
                if bad := jsonsafe.text_problem(text):
                    return _bad_request(request, jsonsafe.shown(key), what, bad)
        return self.get_response(request)


def _bad_request(request: HttpRequest, key: str, what: str, problem: str) -> HttpResponse:
    if request.path.startswith("/api/"):  # the API's own 400 shape: field -> messages
        return JsonResponse({key: [f"The query parameter's {what} {problem}."]}, status=400)
    return HttpResponseBadRequest(
        f"Bad request: the query parameter {key!r}: its {what} {problem}.\n",
        content_type="text/plain; charset=utf-8")
