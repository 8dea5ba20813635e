"""The REST API under /api/: declarative viewsets over tasks.queue and tasks.selectors."""
