"""The live view: the dashboard page and websockets that follow task events as they happen.

`page` renders the dashboard once from `dashboard` (read queries), `routing` mounts the
`consumers`, and `relay` fans one LISTEN connection (tasks.listener) per process out to
them. Counts and workers online come from tasks.selectors, like every other page's.
"""
