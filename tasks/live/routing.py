"""Websocket URLs of the live admin (mounted by taskservice.asgi)."""

from __future__ import annotations

from django.urls import path

from tasks.live import consumers

websocket_urlpatterns = [
    path("ws/tasks/dashboard/", consumers.DashboardConsumer.as_asgi(), name="ws-dashboard"),
    path("ws/tasks/list/", consumers.TaskListConsumer.as_asgi(), name="ws-task-list"),
]
