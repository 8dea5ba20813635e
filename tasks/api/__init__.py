"""The REST API under /api/: declarative viewsets over tasks.engine and tasks.selectors."""
