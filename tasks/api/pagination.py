"""Page-number pagination: `page` and `page_size` (up to 500).

A list answers `{count, page, page_size, next, previous, results}`; `next` and `previous`
are links relative to the server (path and query), so clients behind any proxy and the
local `manage.py task list` produce the same envelope. A page past the end is empty, not
an error: a list that shrank between two requests still answers.
"""

from __future__ import annotations

from django.core.paginator import EmptyPage, Page, Paginator
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

MAX_PAGE_SIZE = 500


def page_count(count: int, page_size: int) -> int:
    return max(1, -(-count // page_size))


def envelope(*, count: int, page: int, page_size: int, results: list,
             full_path: str) -> dict:
    """The list envelope for `page` of `count` tasks, linked from `full_path` (the path
    and query of the request)."""
    pages = page_count(count, page_size)
    following = replace_query_param(full_path, "page", page + 1) if page < pages else None
    previous = None
    if page > 1:
        target = min(page - 1, pages)
        previous = (remove_query_param(full_path, "page") if target == 1
                    else replace_query_param(full_path, "page", target))
    return {"count": count, "page": page, "page_size": page_size, "next": following,
            "previous": previous, "results": results}


class _PastTheEnd(Page):
    def previous_page_number(self) -> int:
        return min(self.number - 1, self.paginator.num_pages)


class LenientPaginator(Paginator):
    """A page number past the last page gives an empty page."""

    def validate_number(self, number):
        try:
            return super().validate_number(number)
        except EmptyPage:
            number = int(number)
            if number > 1:
                return number
            raise

    def page(self, number):
        number = self.validate_number(number)
        if number > self.num_pages:
            return _PastTheEnd([], number, self)
        return super().page(number)


class TaskPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    django_paginator_class = LenientPaginator

    def get_paginated_response(self, data) -> Response:
        return Response(envelope(count=self.page.paginator.count, page=self.page.number,
                                 page_size=self.page.paginator.per_page, results=data,
                                 full_path=self.request.get_full_path()))

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (f"Tasks per page (default {self.page_size}); "
                                            f"at most {MAX_PAGE_SIZE}, larger asks get "
                                            f"{MAX_PAGE_SIZE}.")
                parameter["schema"] = {"type": "integer", "minimum": 1,
                                       "default": self.page_size}
            elif parameter["name"] == self.page_query_param:
                parameter["description"] = "Page number; past the last page is empty."
                parameter["schema"] = {"type": "integer", "minimum": 1, "default": 1}
        return parameters

    def get_paginated_response_schema(self, schema: dict) -> dict:
        described = super().get_paginated_response_schema(schema)
        described["properties"] = {
            "count": described["properties"]["count"],
            "page": {"type": "integer", "example": 2},
            "page_size": {"type": "integer", "example": 50,
                          "description": f"At most {MAX_PAGE_SIZE}."},
            "next": {"type": "string", "nullable": True, "format": "uri-reference",
                     "example": "/api/tasks?page=3&page_size=50"},
            "previous": {"type": "string", "nullable": True, "format": "uri-reference",
                         "example": "/api/tasks?page_size=50"},
            "results": schema,
        }
        described["required"] = ["count", "page", "page_size", "next", "previous", "results"]
        return described
