"""Periodic work of the cluster, run by one elected maintainer (see maintainer.py)."""

from __future__ import annotations

from tasks.maintenance.maintainer import Maintainer

__all__ = ["Maintainer"]
