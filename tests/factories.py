"""factory-boy factories for test data.

TaskFactory writes rows directly, to set up states (failed, running, ...) that would
otherwise need a worker; tests of transitions themselves go through tasks.engine.
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from factory.django import DjangoModelFactory

from tasks.models import Event, Status, Task, TaskHistory


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    # An unusable password: hashing a real one costs ~0.5 s per user; tests log in with
    # tokens or force_login.
    password = "!"


class TaskFactory(DjangoModelFactory):
    class Meta:
        model = Task

    name = factory.Sequence(lambda n: f"task {n}")
    type = "simulate"
    status = Status.QUEUED
    payload = factory.LazyFunction(lambda: {"duration": 0})
    priority = 0
    queue = "default"
    run_at = factory.LazyFunction(timezone.now)
    created_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyFunction(timezone.now)

    class Params:
        finished = factory.Trait(finished_at=factory.LazyFunction(timezone.now))
        failed = factory.Trait(status=Status.FAILED, last_error="RuntimeError: boom",
                               attempts=1, finished_at=factory.LazyFunction(timezone.now))
        cancelled = factory.Trait(status=Status.CANCELLED,
                                  finished_at=factory.LazyFunction(timezone.now))
        succeeded = factory.Trait(status=Status.SUCCEEDED, attempts=1, result={"ok": True},
                                  finished_at=factory.LazyFunction(timezone.now))


class TaskHistoryFactory(DjangoModelFactory):
    class Meta:
        model = TaskHistory

    task = factory.SubFactory(TaskFactory)
    status = factory.SelfAttribute("task.status")
    event_type = Event.TASK_QUEUED
    attempt = 0
    created_at = factory.LazyFunction(timezone.now)
