"""The workflow pages: a list, and each workflow's steps with their parents (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from tasks import authz, workflow_selectors
from tasks.admin.display import task_table, timestamp
from tasks.models import Workflow

STEPS_SHOWN = 200  # steps on a workflow's page; all of them in the task list


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "created")
    list_display_links = ("id", "name")
    ordering = ("-id",)
    sortable_by = ("id",)
    show_facets = admin.ShowFacets.NEVER
    fields = ("name", "owner", "created_when", "steps_display")
    readonly_fields = fields

    class Media:
        css = {"all": ["tasks/admin.css"]}
        js = ["tasks/localtime.js"]

    @admin.display(description="created", ordering="created_at")
    def created(self, workflow: Workflow) -> str:
        return timestamp(workflow.created_at, compact=True)

    @admin.display(description="created")
    def created_when(self, workflow: Workflow) -> str:
        return timestamp(workflow.created_at)

    @admin.display(description="steps")
    def steps_display(self, workflow: Workflow) -> str:
        steps = workflow_selectors.workflow_steps(workflow, limit=STEPS_SHOWN + 1)
        table = task_table(steps[:STEPS_SHOWN], {t.pk: t.parent_ids for t in steps})
        if len(steps) <= STEPS_SHOWN:
            return table
        total = workflow_selectors.workflow_size(workflow)
        url = reverse("admin:tasks_task_changelist") + "?" + urlencode({"workflow": workflow.pk})
        return format_html('{}<p class="task-truncated">The first {} of {} steps are shown; '
                           '<a href="{}" class="task-steps-all">{} more in the task list</a>.'
                           "</p>", table, STEPS_SHOWN, total, url, total - STEPS_SHOWN)

    # Workflows are made through the engine (API, Python) and read here, with the tasks'
    # permissions: a user sees their own unless they may see every task.
    def get_queryset(self, request):
        return authz.visible(super().get_queryset(request), request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return authz.may(request.user, "view")

    def has_module_permission(self, request) -> bool:
        return authz.may(request.user, "view")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
