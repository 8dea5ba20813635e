"""manage.py devserve: the web server (daphne) and one worker, until Ctrl-C."""

import importlib.util
import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run daphne (HTTP + websockets) and one worker; Ctrl-C stops both cleanly."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", default=None)

    def handle(self, *args, host, port, concurrency, **options):
        if importlib.util.find_spec("daphne") is None:
            raise CommandError("devserve runs daphne, which is not installed: install the "
                               "server extra (pip install 'task-service[server]').")
        python = sys.executable
        worker_cmd = [python, "manage.py", "runworker"]
        if concurrency:
            worker_cmd += ["--concurrency", str(concurrency)]
        # Own sessions: a terminal's Ctrl-C reaches only this process, which then sends
        # each child exactly one SIGTERM (a worker takes a second signal as "exit now").
        children = [
            subprocess.Popen([python, "-m", "daphne", "-b", host, "-p", str(port),
                              "taskservice.asgi:application"], start_new_session=True),
            subprocess.Popen(worker_cmd, start_new_session=True),
        ]
        self.stdout.write(f"Serving on http://{host}:{port}/ with one worker. Ctrl-C to stop.")
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 40
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        failed = [c.args[2] if len(c.args) > 2 else c.args for c in children if c.returncode]
        if failed and not stopping:
            self.stderr.write(f"stopped because a process exited: {failed}")
            sys.exit(1)
        self.stdout.write("Stopped.")
