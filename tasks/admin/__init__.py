"""The Django admin as the operator's console: tasks, their history, workers, queues,
schedules.

Importing the package registers TaskAdmin and WorkerAdmin (Django autodiscovers
`tasks.admin`). Pages stay cheap on a million rows: no full-table COUNT(*) (paging), filter
choices and the date drill-down from indexes and planner statistics (tasks.selectors), a
number searches the id index, and only indexed columns sort. Measured by
bench/admin_list.py. The live dashboard page is tasks.live.page.
"""

from tasks.admin import history, queues, schedules, tasks, workers  # noqa: F401 - registers the ModelAdmins
