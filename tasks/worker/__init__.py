"""The `runworker` process, split by role; see `tasks.worker.process` for the map.

    process     Worker: start-up, signals, watching side threads, shutdown
    dispatcher  the main loop: free slots, wake-ups, claims
    execution   executor threads, deadlines, cancel grace, the monitor, abandonment
    completer   outcomes written back in batches
    heartbeat   leases, lost leases, cancel polling
    slots       what the roles share: running jobs, free slots, wake-up
    hooks       points a test can watch; `testing` runs a worker in a thread
"""

from tasks.worker.dbretry import TRANSIENT_DB_ERRORS, with_db_retry
from tasks.worker.execution import CANCEL_GRACE, describe_error, format_error
from tasks.worker.hooks import Hooks
from tasks.worker.process import Worker, make_worker_id

__all__ = ["CANCEL_GRACE", "TRANSIENT_DB_ERRORS", "Hooks", "Worker", "describe_error",
           "format_error", "make_worker_id", "with_db_retry"]
