"""REST create throughput: 8 concurrent clients POST one task each, against gunicorn and
daphne. Prints a table.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench .venv/bin/python bench/rest.py
    .venv/bin/python bench/rest.py --clients 8 --seconds 10 --servers gunicorn,daphne

Each server runs the production settings (DEBUG off, connections kept 60 s as the chart
and Compose deploy them) on a free local port; gunicorn with
--gunicorn-workers sync workers (default 3, as the README deploys it), daphne as one
process. Each client is a process of its own with one keep-alive connection, sending
`{"name": ..., "type": "noop"}` with a token for --seconds after a one-second warm-up.
Reported: creates per second, and the latency p50 and p95 of a create. The database is
migrated first; the tasks created are deleted at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskservice.settings")
os.environ["DEBUG"] = "0"
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret-" + "x" * 40)
os.environ["ALLOWED_HOSTS"] = "127.0.0.1"
os.environ["SECURE_SSL_REDIRECT"] = "0"  # plain HTTP on loopback
os.environ.setdefault("DB_CONN_MAX_AGE", "60")  # as the chart and Compose deploy it
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

BODY = json.dumps({"name": "rest bench", "type": "noop"}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token() -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True})
    return Token.objects.get_or_create(user=user)[0].key


def start(server: str, port: int, workers: int) -> subprocess.Popen:
    if server == "gunicorn":
        cmd = [str(Path(sys.executable).parent / "gunicorn"), "taskservice.wsgi:application",
               "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    else:
        cmd = [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
               "taskservice.asgi:application"]
    env = dict(os.environ, LOG_LEVEL="WARNING")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{server} did not answer /health on port {port}")


def client(port: int, key: str, warmup_until: float, until: float, out) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
    lats, errors = [], 0
    while True:
        t0 = time.perf_counter()
        now = time.time()
        if now >= until:
            break
        try:
            conn.request("POST", "/api/tasks", BODY, headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 201
        except (OSError, http.client.HTTPException):
            ok = False
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if now >= warmup_until:
            if ok:
                lats.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1
    out.put((lats, errors))


def run(server: str, clients: int, seconds: float, workers: int, key: str) -> dict:
    port = free_port()
    proc = start(server, port, workers)
    try:
        out = multiprocessing.Queue()
        warm = time.time() + 1.0
        until = warm + seconds
        procs = [multiprocessing.Process(target=client, args=(port, key, warm, until, out))
                 for _ in range(clients)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lats = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    return {"rate": len(lats) / seconds, "p50": statistics.median(lats) if lats else 0,
            "p95": lats[int(0.95 * (len(lats) - 1))] if lats else 0, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--servers", default="gunicorn,daphne")
    parser.add_argument("--gunicorn-workers", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    key = token()
    connection.close()  # the servers and clients have their own
    rows = []
    for server in args.servers.split(","):
        r = run(server, args.clients, args.seconds, args.gunicorn_workers, key)
        label = (f"gunicorn, {args.gunicorn_workers} sync workers" if server == "gunicorn"
                 else "daphne, 1 process")
        rows.append((label, r))
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM task_history WHERE task_id IN "
                       "(SELECT id FROM tasks WHERE name = 'rest bench')")
        cursor.execute("DELETE FROM tasks WHERE name = 'rest bench'")
    print(f"\nREST create, {args.clients} clients, {args.seconds:.0f} s each, one task per "
          f"request\n")
    print(f"| {'server':<28} | {'creates/s':>10} | {'p50 ms':>7} | {'p95 ms':>7} | errors")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 9}|{'-' * 9}|-------")
    for label, r in rows:
        print(f"| {label:<28} | {r['rate']:>10,.0f} | {r['p50']:>7.1f} | {r['p95']:>7.1f} | "
              f"{r['errors']}")


if __name__ == "__main__":
    main()
