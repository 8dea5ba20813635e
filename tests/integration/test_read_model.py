"""One read model: the dashboard, the API's stats and /metrics give the same numbers, and
a worker is online by one rule (tasks.states.liveness_window) wherever it is shown."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tasks import engine, metrics, selectors, states
from tasks.conf import engine as engine_settings
from tasks.live import dashboard
from tasks.models import Worker
from tests.integration.conftest import enqueue

pytestmark = pytest.mark.django_db


def register(worker_id: str, silent_for: float) -> None:
    engine.register_worker(worker_id=worker_id, hostname="h", pid=1, queues=[], concurrency=2)
    Worker.objects.filter(id=worker_id).update(
        last_seen=timezone.now() - datetime.timedelta(seconds=silent_for))


def test_a_worker_is_online_by_the_same_window_everywhere():
    window = states.liveness_window(engine_settings())
    register("fresh", silent_for=window - 5)
    register("silent", silent_for=window + 5)
    assert metrics.worker_timeout() == window

    online = set(selectors.workers_online().values_list("id", flat=True))
    shown = {w["id"]: w["online"] for w in dashboard.snapshot()["workers"]}
    assert online == {"fresh"}
    assert shown == {"fresh": True, "silent": False}
    assert selectors.stats()["workers_online"] == 1


def test_the_dashboard_counts_are_the_stats_counts_for_everybody_and_for_one_owner():
    owner = get_user_model().objects.create_user("owner")
    enqueue(), enqueue(), enqueue(owner=owner)
    engine.cancel(enqueue(owner=owner).id, reason="test")

    # `owner` may not see every task: stats, like the dashboard, are of their own.
    for owner_id, user in ((None, selectors.ALL), (owner.id, owner)):
        counts = dashboard.snapshot(include_throughput=False, owner_id=owner_id)["counts"]
        stats = selectors.stats(user)
        assert counts == {s: stats[f"{s}_tasks"] for s in counts}
    own = dashboard.snapshot(include_throughput=False, owner_id=owner.id)["counts"]
    assert (own["queued"], own["cancelled"]) == (1, 1)
