-- Every write statement of the task engine, each under a name, loaded by tasks/engine/sql.py.
--
-- Format: a line `-- name: <name> --`, then one comment line saying what it does, then the
-- SQL up to the next name. Parameters are psycopg's named `%(name)s`; a literal percent
-- sign is `%%`. To try one in psql, replace the parameters by values.
--
-- A statement that writes a `task_history` row is a transition: it changes a task's
-- status and writes, in the same statement, one history row per changed task and one
-- NOTIFY on the channel `taskservice` (tasks/engine/events.py: CHANNEL; at most 100 ids,
-- NOTIFY_MAX_IDS). tests/integration/test_engine_statements.py runs every one of them.

-- name: insert_task --
-- Store one queued task (nothing if its owner already used the idempotency key).
WITH ins AS (
    INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                       max_retries, timeout_seconds, attempts, last_error, idempotency_key,
                       idempotency_hash, owner_id, origin, created_at, updated_at)
    VALUES (%(name)s, %(type)s, 'queued', %(payload)s::jsonb, %(priority)s, %(queue)s,
            coalesce(%(run_at)s, now()), 0, %(max_retries)s, %(timeout_seconds)s, 0, '',
            %(idempotency_key)s, %(idempotency_hash)s, %(owner_id)s, %(origin)s, now(), now())
    ON CONFLICT ((coalesce(owner_id, 0)), idempotency_key)
        WHERE idempotency_key IS NOT NULL DO NOTHING
    -- what the server decided; the rest of the task is what was sent
    RETURNING id, created_at, run_at, queue, type
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'queued', 'task_queued', 0, '', '', now() FROM ins
)
SELECT ins.id, ins.created_at, ins.run_at, pg_notify('taskservice', json_build_object(
    'event', 'task_queued', 'count', 1, 'ids', json_build_array(ins.id),
    'queue', ins.queue, 'type', ins.type)::text)
FROM ins

-- name: insert_tasks --
-- Store many queued tasks in input order (skipping owner's reused idempotency keys).
WITH src AS (
    SELECT * FROM unnest(%(names)s::text[], %(types)s::text[], %(payloads)s::text[],
                         %(priorities)s::int[], %(queues)s::text[], %(run_ats)s::timestamptz[],
                         %(max_retries)s::int[], %(timeouts)s::int[], %(keys)s::text[],
                         %(hashes)s::text[])
           WITH ORDINALITY AS s(name, type, payload, priority, queue, run_at, max_retries,
                                timeout_seconds, idempotency_key, idempotency_hash, ord)
), ins AS (
    INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                       max_retries, timeout_seconds, attempts, last_error, idempotency_key,
                       idempotency_hash, owner_id, origin, created_at, updated_at)
    SELECT name, type, 'queued', payload::jsonb, priority, queue, coalesce(run_at, now()), 0,
           max_retries, timeout_seconds, 0, '', idempotency_key, idempotency_hash,
           %(owner_id)s::bigint, %(origin)s::text, now(), now()
    FROM src ORDER BY ord
    ON CONFLICT ((coalesce(owner_id, 0)), idempotency_key)
        WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, idempotency_key, created_at, run_at
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'queued', 'task_queued', 0, '', '', now() FROM ins
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'task_queued',
        'count', (SELECT count(*) FROM ins),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM ins ORDER BY id LIMIT 100) s)
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM ins)
)
SELECT ins.* FROM ins LEFT JOIN note ON true

-- name: reserve_task_ids --
-- Take `n` task ids from the tasks' sequence (a copied batch's, a graph's), and now().
-- The sequence is looked up once (a lookup per id took ten times as long as the ids).
SELECT now(), array(SELECT nextval(s.seq) FROM generate_series(1, %(n)s),
                           (SELECT pg_get_serial_sequence('tasks', 'id')::regclass AS seq
                            OFFSET 0) s)

-- name: copy_tasks --
-- Stream queued tasks (ids from reserve_task_ids) into the table: a large batch's rows.
COPY tasks (id, name, type, status, payload, priority, queue, run_at, retry_count,
            max_retries, timeout_seconds, attempts, last_error, owner_id, origin, created_at,
            updated_at, has_dependents, on_parent_failure)
FROM STDIN

-- name: record_queued --
-- The task_queued history rows of tasks just copied in (copy_tasks), and their one NOTIFY.
WITH hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'queued', 'task_queued', 0, '', '', now() FROM unnest(%(ids)s::bigint[]) id
    RETURNING task_id
)
SELECT count(*), pg_notify('taskservice', json_build_object(
    'event', 'task_queued', 'count', count(*),
    'ids', (SELECT coalesce(json_agg(i), '[]') FROM
              (SELECT unnest(%(ids)s::bigint[]) ORDER BY 1 LIMIT 100) s(i))
)::text)
FROM hist

-- name: select_by_keys --
-- The tasks an owner (0: none) submitted under the given idempotency keys.
SELECT id, name, type, status, payload, priority, queue, run_at, retry_count,
       max_retries, timeout_seconds, attempts, locked_by, locked_until, last_error,
       result, idempotency_key, idempotency_hash, owner_id, origin,
       cancel_requested_at, created_at, updated_at, started_at, finished_at,
       has_dependents, on_parent_failure, failed_parent_id, workflow_id, progress
FROM tasks
WHERE coalesce(owner_id, 0) = %(owner_id)s AND idempotency_key = ANY(%(keys)s)

-- name: lock_parents --
-- Lock the given parents in id order and mark them has_dependents: their status and owner.
-- A parent ending meanwhile waits for this transaction, then sees its new children.
WITH locked AS MATERIALIZED (
    SELECT id FROM tasks WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id FOR NO KEY UPDATE
)
UPDATE tasks t SET has_dependents = true FROM locked l WHERE t.id = l.id
RETURNING t.id, t.status, t.owner_id

-- name: insert_workflow --
-- Store one workflow (the tasks of a chain, a group or a list of steps); its id.
INSERT INTO task_workflows (name, owner_id, created_at)
VALUES (%(name)s, %(owner_id)s, now())
RETURNING id, created_at

-- name: insert_graph --
-- Store tasks under allocated ids, `waiting` or `queued` as given, with their edges.
WITH src AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(names)s::text[], %(types)s::text[],
                         %(payloads)s::text[], %(priorities)s::int[], %(queues)s::text[],
                         %(run_ats)s::timestamptz[], %(max_retries)s::int[],
                         %(timeouts)s::int[], %(statuses)s::text[],
                         %(has_dependents)s::boolean[], %(on_parent_failures)s::text[])
           WITH ORDINALITY AS s(id, name, type, payload, priority, queue, run_at, max_retries,
                                timeout_seconds, status, has_dependents, on_parent_failure,
                                ord)
), ins AS (
    INSERT INTO tasks (id, name, type, status, payload, priority, queue, run_at, retry_count,
                       max_retries, timeout_seconds, attempts, last_error, owner_id, origin,
                       created_at, updated_at, has_dependents, on_parent_failure, workflow_id)
    SELECT id, name, type, status, payload::jsonb, priority, queue, coalesce(run_at, now()),
           0, max_retries, timeout_seconds, 0, '', %(owner_id)s::bigint, %(origin)s::text,
           now(), now(), has_dependents, on_parent_failure, %(workflow_id)s::bigint
    FROM src ORDER BY ord
    RETURNING id, status, created_at, run_at
), edges AS (
    INSERT INTO task_dependencies (child_id, parent_id)
    SELECT * FROM unnest(%(edge_children)s::bigint[], %(edge_parents)s::bigint[])
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, status, CASE status WHEN 'waiting' THEN 'task_waiting' ELSE 'task_queued' END,
           0, '', '', now()
    FROM ins
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', CASE status WHEN 'waiting' THEN 'task_waiting' ELSE 'task_queued' END,
        'count', count(*), 'ids', (array_agg(id ORDER BY id))[1:100])::text) AS sent
    FROM ins GROUP BY status
)
SELECT ins.id, ins.created_at, ins.run_at FROM ins CROSS JOIN (SELECT count(*) FROM note) n
ORDER BY ins.id

-- name: select_parent_results --
-- The parents of a task with their status and result, in id order.
SELECT p.id, p.status, p.result FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.child_id = %(id)s ORDER BY p.id

-- name: claim_any --
-- Claim up to `limit` due tasks of any queue without a pause or limit: priority, then FIFO;
-- only the worker's `types` (NULL: any) and none of the ids it `skip`s (it cannot run them).
-- Queues with a row in task_queues that pauses or limits them are left out (claim_limited
-- takes the limited ones). With no such row and no skipped ids (`plain`) the claim is the
-- bare index walk: the tests on `ctl` and `skip` are one-time filters, so they change
-- neither the plan nor its cost; only then does `steered` filter queues and ids (a filter
-- in `plain` itself would change the planner's estimates, and a drain without statistics
-- would sort the table).
WITH ctl AS MATERIALIZED (
    SELECT name, paused FROM task_queues
    WHERE paused OR concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL
), plain AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE status IN ('queued', 'retrying') AND run_at <= now()
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (SELECT 1 FROM ctl) AND cardinality(%(skip)s::bigint[]) = 0
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), steered AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE status IN ('queued', 'retrying') AND run_at <= now()
      AND (EXISTS (SELECT 1 FROM ctl) OR cardinality(%(skip)s::bigint[]) > 0)
      AND queue <> ALL (ARRAY(SELECT name FROM ctl))
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT (id = ANY(%(skip)s::bigint[]))
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM plain UNION ALL SELECT id FROM steered
), claimed AS (
    UPDATE tasks t
    SET status = 'running', locked_by = %(worker)s,
        locked_until = now() + make_interval(secs => %(lease)s),
        attempts = t.attempts + 1, started_at = now(), updated_at = now(),
        cancel_requested_at = NULL
    FROM picked WHERE t.id = picked.id AND t.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING t.id, t.name, t.type, t.payload, t.queue, t.priority, t.attempts,
              t.retry_count, t.max_retries, t.timeout_seconds
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'running', 'task_started', attempts, %(worker)s, '', now() FROM claimed
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'task_started',
        'count', (SELECT count(*) FROM claimed),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM claimed ORDER BY id LIMIT 100) s),
        'worker', %(worker)s::text
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM claimed)
)
-- One row per claimed task, or one row of NULLs when none; the last columns count the
-- limited queues (not paused) left to claim_limited and give the table's size in bytes
-- (tasks.engine.sql: statements prepared on a much smaller table are planned again).
SELECT claimed.*, k.limited, pg_relation_size('tasks') AS table_bytes
FROM (SELECT count(*) FILTER (WHERE NOT paused) AS limited FROM ctl) k
LEFT JOIN claimed ON true LEFT JOIN note ON true
ORDER BY claimed.priority DESC, claimed.id

-- name: claim_queues --
-- Claim up to `limit` due tasks of the given queues, unpaused and unlimited ones only;
-- only the worker's `types` (NULL: any) and none of the ids it `skip`s (`plain` and
-- `steered` as in claim_any).
WITH ctl AS MATERIALIZED (
    SELECT name, paused FROM task_queues
    WHERE (paused OR concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL)
      AND name = ANY(%(queues)s)
), plain AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE status IN ('queued', 'retrying') AND run_at <= now() AND queue = ANY(%(queues)s)
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (SELECT 1 FROM ctl) AND cardinality(%(skip)s::bigint[]) = 0
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), steered AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE status IN ('queued', 'retrying') AND run_at <= now() AND queue = ANY(%(queues)s)
      AND (EXISTS (SELECT 1 FROM ctl) OR cardinality(%(skip)s::bigint[]) > 0)
      AND queue <> ALL (ARRAY(SELECT name FROM ctl))
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT (id = ANY(%(skip)s::bigint[]))
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM plain UNION ALL SELECT id FROM steered
), claimed AS (
    UPDATE tasks t
    SET status = 'running', locked_by = %(worker)s,
        locked_until = now() + make_interval(secs => %(lease)s),
        attempts = t.attempts + 1, started_at = now(), updated_at = now(),
        cancel_requested_at = NULL
    FROM picked WHERE t.id = picked.id AND t.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING t.id, t.name, t.type, t.payload, t.queue, t.priority, t.attempts,
              t.retry_count, t.max_retries, t.timeout_seconds
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'running', 'task_started', attempts, %(worker)s, '', now() FROM claimed
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'task_started',
        'count', (SELECT count(*) FROM claimed),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM claimed ORDER BY id LIMIT 100) s),
        'worker', %(worker)s::text
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM claimed)
)
-- One row per claimed task, or one row of NULLs when none; the last columns count the
-- limited queues (not paused) left to claim_limited and give the table's size in bytes
-- (tasks.engine.sql: statements prepared on a much smaller table are planned again).
SELECT claimed.*, k.limited, pg_relation_size('tasks') AS table_bytes
FROM (SELECT count(*) FILTER (WHERE NOT paused) AS limited FROM ctl) k
LEFT JOIN claimed ON true LEFT JOIN note ON true
ORDER BY claimed.priority DESC, claimed.id

-- name: lock_limited_queues --
-- Lock, in name order, the unpaused limited queues (of `queues`; NULL: all) with due tasks
-- this worker could run (its `types`, not its `skip`ped ids).
-- The first statement of the limited claim's transaction: claim_limited, the next one,
-- takes a fresh snapshot that sees every claim of the sessions that held these rows.
SELECT name FROM task_queues q
WHERE NOT paused AND (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL)
  AND (%(queues)s::text[] IS NULL OR name = ANY(%(queues)s::text[]))
  AND EXISTS (SELECT 1 FROM tasks t WHERE t.queue = q.name
              AND t.status IN ('queued', 'retrying') AND t.run_at <= now()
              AND (%(types)s::text[] IS NULL OR t.type = ANY(%(types)s::text[]))
              AND NOT (t.id = ANY(%(skip)s::bigint[])))
ORDER BY name
FOR UPDATE

-- name: claim_limited --
-- Claim up to `limit` due tasks of the locked queues `names`, each within its limits.
-- Concurrency: the queue's running tasks, counted now. Rate: a token bucket refilled at
-- rate_limit per second up to max(1, rate_limit / 10) tokens, one token per start. Times
-- are the statement's (after the locks were granted), so starts are stamped in the order
-- their tokens were taken.
WITH q AS MATERIALIZED (
    SELECT q.name, q.concurrency_limit, q.rate_limit,
           CASE WHEN q.rate_limit IS NULL THEN NULL
                ELSE least(greatest(1.0, q.rate_limit / 10),
                           q.tokens + q.rate_limit * greatest(0.0, extract(epoch FROM
                               statement_timestamp() - q.refilled_at)::float8)) END AS tokens,
           (SELECT count(*) FROM tasks r
            WHERE r.queue = q.name AND r.status = 'running') AS running
    FROM task_queues q
    WHERE q.name = ANY(%(names)s::text[]) AND NOT q.paused
), budget AS (
    SELECT name, greatest(0, least(%(limit)s::bigint,
                                   coalesce(concurrency_limit - running, %(limit)s::bigint),
                                   coalesce(floor(tokens)::bigint, %(limit)s::bigint))) AS n
    FROM q
), candidates AS MATERIALIZED (
    SELECT c.id, c.priority, c.run_at FROM budget b CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM tasks
        WHERE queue = b.name AND status IN ('queued', 'retrying') AND run_at <= now()
          AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
          AND NOT (id = ANY(%(skip)s::bigint[]))
        ORDER BY priority DESC, run_at, id
        LIMIT b.n
        FOR UPDATE SKIP LOCKED) c
    WHERE b.n > 0
), picked AS MATERIALIZED (
    SELECT id FROM candidates ORDER BY priority DESC, run_at, id LIMIT %(limit)s
), claimed AS (
    UPDATE tasks t
    SET status = 'running', locked_by = %(worker)s,
        locked_until = statement_timestamp() + make_interval(secs => %(lease)s),
        attempts = t.attempts + 1, started_at = statement_timestamp(),
        updated_at = statement_timestamp(), cancel_requested_at = NULL
    FROM picked WHERE t.id = picked.id AND t.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING t.id, t.name, t.type, t.payload, t.queue, t.priority, t.attempts,
              t.retry_count, t.max_retries, t.timeout_seconds
), spent AS (
    UPDATE task_queues u
    SET tokens = q.tokens - coalesce((SELECT count(*) FROM claimed c
                                      WHERE c.queue = q.name), 0),
        refilled_at = greatest(u.refilled_at, statement_timestamp())
    FROM q WHERE u.name = q.name AND q.rate_limit IS NOT NULL
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'running', 'task_started', attempts, %(worker)s, '', statement_timestamp()
    FROM claimed
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'task_started',
        'count', (SELECT count(*) FROM claimed),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM claimed ORDER BY id LIMIT 100) s),
        'worker', %(worker)s::text
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM claimed)
)
SELECT claimed.* FROM claimed LEFT JOIN note ON true
ORDER BY claimed.priority DESC, claimed.id

-- name: idle_hint --
-- For an idle worker of `queues` (NULL: all) that runs `types` (NULL: any) and skips the
-- ids `skip`: seconds until a task may be claimable
-- (NULL: none known), and whether due tasks are held back by a limit (a finished task
-- may free a slot). Paused queues count for neither: their resume sends an event.
WITH ctl AS MATERIALIZED (
    SELECT name, paused, concurrency_limit, rate_limit, tokens, refilled_at
    FROM task_queues
    WHERE (paused OR concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL)
      AND (%(queues)s::text[] IS NULL OR name = ANY(%(queues)s::text[]))
), plain AS (
    SELECT min(run_at) AS due FROM tasks
    WHERE status IN ('queued', 'retrying')
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND queue <> ALL (ARRAY(SELECT name FROM ctl))
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT (id = ANY(%(skip)s::bigint[]))
), limited AS (
    SELECT (SELECT min(run_at) FROM tasks t WHERE t.queue = c.name
            AND t.status IN ('queued', 'retrying')
            AND (%(types)s::text[] IS NULL OR t.type = ANY(%(types)s::text[]))
            AND NOT (t.id = ANY(%(skip)s::bigint[]))) AS due,
           c.concurrency_limit IS NOT NULL
             AND (SELECT count(*) FROM tasks r WHERE r.queue = c.name
                  AND r.status = 'running') >= c.concurrency_limit AS at_limit,
           CASE WHEN c.rate_limit IS NULL THEN 0.0
                ELSE greatest(0.0, (1.0 - c.tokens - c.rate_limit * extract(epoch FROM
                        now() - c.refilled_at)::float8) / c.rate_limit) END AS token_wait
    FROM ctl c WHERE NOT c.paused
)
SELECT least((SELECT extract(epoch FROM due - now())::float8 FROM plain),
             (SELECT min(greatest(extract(epoch FROM due - now())::float8, token_wait))
              FROM limited WHERE due IS NOT NULL AND NOT at_limit)),
       EXISTS (SELECT 1 FROM limited WHERE due <= now() AND at_limit)

-- name: set_queue --
-- Pause, resume or limit a queue (its row made if missing); an audit row and an event.
-- A new rate starts with a full bucket.
WITH q AS (
    INSERT INTO task_queues AS q (name, paused, concurrency_limit, rate_limit, tokens,
                                  refilled_at, updated_at)
    VALUES (%(name)s, coalesce(%(paused)s::boolean, false), %(concurrency_limit)s::int,
            %(rate_limit)s::float8,
            greatest(1.0, coalesce(%(rate_limit)s::float8, 0.0) / 10), now(), now())
    ON CONFLICT (name) DO UPDATE SET
        paused = coalesce(%(paused)s::boolean, q.paused),
        concurrency_limit = CASE WHEN %(set_concurrency)s::boolean
                                 THEN %(concurrency_limit)s::int ELSE q.concurrency_limit END,
        rate_limit = CASE WHEN %(set_rate)s::boolean THEN %(rate_limit)s::float8
                          ELSE q.rate_limit END,
        tokens = CASE WHEN %(set_rate)s::boolean
                      THEN greatest(1.0, coalesce(%(rate_limit)s::float8, 0.0) / 10)
                      ELSE q.tokens END,
        refilled_at = CASE WHEN %(set_rate)s::boolean THEN now() ELSE q.refilled_at END,
        updated_at = now()
    RETURNING q.name, q.paused, q.concurrency_limit, q.rate_limit
), audit AS (
    INSERT INTO task_audit (created_at, actor, action, target_kind, target, details)
    SELECT now(), %(actor)s, %(action)s, 'queue', name,
           jsonb_build_object('paused', paused, 'concurrency_limit', concurrency_limit,
                              'rate_limit', rate_limit)
    FROM q
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', %(action)s::text, 'count', 0, 'ids', '[]'::json, 'queue', name,
        'actor', %(actor)s::text, 'paused', paused, 'concurrency_limit', concurrency_limit,
        'rate_limit', rate_limit)::text) AS sent
    FROM q
)
SELECT q.name, q.paused, q.concurrency_limit, q.rate_limit FROM q LEFT JOIN note ON true

-- name: select_due_schedules --
-- Lock up to `limit` enabled schedules whose pending tick is due at `now`, soonest first.
SELECT id, name, type, payload, queue, priority, max_retries, timeout_seconds, cron,
       timezone, interval_seconds, missed_ticks, next_run_at, owner_id
FROM task_schedules
WHERE enabled AND next_run_at <= %(now)s
ORDER BY next_run_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: enqueue_tick --
-- Store a schedule's task for one tick, due at the tick, unless that tick's key exists.
-- The key `schedule:<id>:<tick>` is unique per owner: no crash or second leader doubles it.
WITH ins AS (
    INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                       max_retries, timeout_seconds, attempts, last_error, idempotency_key,
                       owner_id, origin, created_at, updated_at)
    VALUES (%(name)s, %(type)s, 'queued', %(payload)s::jsonb, %(priority)s, %(queue)s,
            %(tick)s, 0, %(max_retries)s, %(timeout_seconds)s, 0, '', %(key)s,
            %(owner_id)s::bigint, 'schedule', now(), now())
    ON CONFLICT ((coalesce(owner_id, 0)), idempotency_key)
        WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, queue, type
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'queued', 'task_queued', 0, '', %(details)s, now() FROM ins
)
SELECT ins.id, pg_notify('taskservice', json_build_object(
    'event', 'task_queued', 'count', 1, 'ids', json_build_array(ins.id),
    'queue', ins.queue, 'type', ins.type)::text)
FROM ins

-- name: worker_runs_type --
-- Whether a worker online (a task_workers row: the reaper removes lost ones) runs `type`.
SELECT EXISTS (SELECT 1 FROM task_workers WHERE types @> jsonb_build_array(%(type)s::text))

-- name: advance_schedule --
-- Move a schedule to its next tick, recording the tick enqueued and its task (if any).
UPDATE task_schedules
SET next_run_at = %(next_run_at)s, last_tick_at = coalesce(%(tick)s, last_tick_at),
    last_task_id = coalesce(%(task_id)s::bigint, last_task_id), updated_at = now()
WHERE id = %(id)s
RETURNING id

-- name: heartbeat --
-- Renew a worker's leases and last_seen; its held ids, cancel flags, and whether it is known.
-- A row another transaction holds (its completion being written, a person's cancel) is
-- held all the same but renewed at the next beat: the heartbeat never waits for a row
-- lock, so it cannot deadlock with the statements that end runs.
WITH mine AS MATERIALIZED (
    SELECT id, cancel_requested_at IS NOT NULL AS cancel FROM tasks
    WHERE status = 'running' AND locked_by = %(worker)s
), lockable AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE id IN (SELECT id FROM mine) AND status = 'running' AND locked_by = %(worker)s
    FOR NO KEY UPDATE SKIP LOCKED
), renewed AS (
    UPDATE tasks t SET locked_until = now() + make_interval(secs => %(lease)s)
    FROM lockable l WHERE t.id = l.id
), seen AS (
    UPDATE task_workers SET last_seen = now() WHERE id = %(worker)s RETURNING id
)
SELECT id, cancel, (SELECT count(*) FROM seen) FROM mine
UNION ALL
SELECT NULL, NULL, (SELECT count(*) FROM seen) WHERE NOT EXISTS (SELECT 1 FROM mine)

-- name: select_cancel_requested --
-- Running tasks of a worker that somebody asked to cancel (the polling fallback).
SELECT id FROM tasks
WHERE status = 'running' AND locked_by = %(worker)s AND cancel_requested_at IS NOT NULL

-- name: complete_runs --
-- Mark runs succeeded (fenced on worker and attempt), releasing children; the ids applied.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(results)s::text[])
           AS i(id, attempt, result)
), done AS (
    UPDATE tasks t
    SET status = 'succeeded', result = i.result::jsonb, finished_at = now(),
        updated_at = now(), locked_by = NULL, locked_until = NULL
    FROM input i
    -- Found by id; status and owner are checked on the row (`|| ''`: never through an
    -- index on status, which on stale statistics would walk every running task).
    WHERE t.id = ANY(%(ids)s::bigint[]) AND t.id = i.id AND t.status || '' = 'running'
      AND t.locked_by = %(worker)s
      AND t.attempts = i.attempt
    RETURNING t.id, t.attempts, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'succeeded', 'task_succeeded', attempts, %(worker)s, '', now() FROM done
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'task_succeeded',
        'count', (SELECT count(*) FROM done),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM done ORDER BY id LIMIT 100) s),
        'worker', %(worker)s::text
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM done)
), settle AS (
    -- Children of the parents just ended (migration 0006); NULL, not called, without any.
    SELECT task_settle_dependents(array_agg(id)) FROM done WHERE has_dependents
)
SELECT done.id FROM done LEFT JOIN note ON true LEFT JOIN settle ON true

-- name: fail_runs --
-- End runs in error (fenced): retry after the given delay, fail for good, or cancel if asked.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(errors)s::text[],
                         %(delays)s::float8[], %(error_classes)s::text[],
                         %(error_messages)s::text[], %(tracebacks)s::text[])
           AS i(id, attempt, error, delay, error_class, error_message, traceback)
), upd AS (
    UPDATE tasks t
    -- The after-failure rule (migration 0004): cancelled if asked, else retrying while
    -- retries are left, else failed.
    SET status = task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                           t.max_retries),
        retry_count = CASE task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                                     t.max_retries)
                      WHEN 'retrying' THEN t.retry_count + 1 ELSE t.retry_count END,
        run_at = CASE task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                                t.max_retries)
                 WHEN 'retrying' THEN now() + make_interval(secs => i.delay) ELSE t.run_at END,
        finished_at = CASE task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                                     t.max_retries)
                      WHEN 'retrying' THEN NULL ELSE now() END,
        last_error = i.error, updated_at = now(), locked_by = NULL, locked_until = NULL
    FROM input i
    -- Found by id; status and owner are checked on the row (`|| ''`: never through an
    -- index on status, which on stale statistics would walk every running task).
    WHERE t.id = ANY(%(ids)s::bigint[]) AND t.id = i.id AND t.status || '' = 'running'
      AND t.locked_by = %(worker)s
      AND t.attempts = i.attempt
    RETURNING t.id, t.status, t.attempts, t.retry_count, t.max_retries, i.delay, i.error,
              i.error_class, i.error_message, i.traceback, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, error_class,
                              error_message, traceback, details, created_at)
    SELECT id, status,
           CASE status WHEN 'retrying' THEN 'retry_scheduled'
                       WHEN 'cancelled' THEN 'task_cancelled' ELSE 'task_failed' END,
           attempts, %(worker)s, error_class, error_message, traceback,
           CASE status WHEN 'retrying'
                THEN format('retry %%s of %%s in %%ss: %%s', retry_count, max_retries,
                            round(delay::numeric, 1), right(error, 4000))
                WHEN 'cancelled'
                THEN format('cancelled as requested; the run ended with: %%s',
                            right(error, 4000))
                ELSE format('failed after %%s attempts: %%s', attempts, right(error, 4000))
           END,
           now()
    FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', CASE status WHEN 'retrying' THEN 'retry_scheduled'
                             WHEN 'cancelled' THEN 'task_cancelled' ELSE 'task_failed' END,
        'count', count(*), 'worker', %(worker)s::text,
        'ids', (array_agg(id ORDER BY id))[1:100])::text) AS sent
    FROM upd GROUP BY status
), settle AS (
    SELECT task_settle_dependents(array_agg(id)) FROM upd
    WHERE has_dependents AND status IN ('failed', 'cancelled')
)
SELECT upd.id, upd.status FROM upd CROSS JOIN (SELECT count(*) FROM note) n
LEFT JOIN settle ON true

-- name: snooze_runs --
-- Runs the plugin snoozed (fenced): `queued` again, due after the delay, no retry used;
-- `cancelled` (and their waiting children with them) if a cancel was asked meanwhile.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(delays)s::float8[])
           AS i(id, attempt, delay)
), upd AS (
    UPDATE tasks t
    SET status = CASE WHEN t.cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
        run_at = CASE WHEN t.cancel_requested_at IS NULL
                      THEN now() + make_interval(secs => i.delay) ELSE t.run_at END,
        finished_at = CASE WHEN t.cancel_requested_at IS NULL THEN NULL ELSE now() END,
        updated_at = now(), locked_by = NULL, locked_until = NULL
    FROM input i
    -- Found by id; status and owner are checked on the row (`|| ''`: never through an
    -- index on status, which on stale statistics would walk every running task).
    WHERE t.id = ANY(%(ids)s::bigint[]) AND t.id = i.id AND t.status || '' = 'running'
      AND t.locked_by = %(worker)s
      AND t.attempts = i.attempt
    RETURNING t.id, t.status, t.attempts, i.delay, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, status,
           CASE status WHEN 'queued' THEN 'task_snoozed' ELSE 'task_cancelled' END,
           attempts, %(worker)s,
           CASE status WHEN 'queued' THEN format('snoozed for %%ss', round(delay::numeric, 1))
                ELSE 'cancelled as requested; the run snoozed' END,
           now()
    FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', CASE status WHEN 'queued' THEN 'task_snoozed' ELSE 'task_cancelled' END,
        'count', count(*), 'worker', %(worker)s::text,
        'ids', (array_agg(id ORDER BY id))[1:100])::text) AS sent
    FROM upd GROUP BY status
), settle AS (
    SELECT task_settle_dependents(array_agg(id)) FROM upd
    WHERE has_dependents AND status = 'cancelled'
)
SELECT upd.id FROM upd CROSS JOIN (SELECT count(*) FROM note) n LEFT JOIN settle ON true

-- name: update_progress --
-- Store a running task's progress (fenced on worker and attempt) and send task_progress.
WITH upd AS (
    UPDATE tasks t SET progress = %(progress)s::jsonb
    WHERE t.id = %(id)s AND t.status = 'running' AND t.locked_by = %(worker)s
      AND t.attempts = %(attempt)s
    RETURNING t.id
)
SELECT upd.id, pg_notify('taskservice', json_build_object(
    'event', 'task_progress', 'count', 1, 'ids', json_build_array(upd.id),
    'progress', %(summary)s::jsonb)::text)
FROM upd

-- name: cancel_runs --
-- A worker ends runs that were cancelled (fenced): they end `cancelled`.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(details)s::text[],
                         %(error_classes)s::text[], %(error_messages)s::text[],
                         %(tracebacks)s::text[])
           AS i(id, attempt, details, error_class, error_message, traceback)
), upd AS (
    UPDATE tasks t
    SET status = 'cancelled', updated_at = now(), locked_by = NULL, locked_until = NULL,
        finished_at = now()
    FROM input i
    -- Found by id; status and owner are checked on the row (`|| ''`: never through an
    -- index on status, which on stale statistics would walk every running task).
    WHERE t.id = ANY(%(ids)s::bigint[]) AND t.id = i.id AND t.status || '' = 'running'
      AND t.locked_by = %(worker)s
      AND t.attempts = i.attempt
    RETURNING t.id, t.status, t.attempts, i.details, i.error_class, i.error_message,
              i.traceback, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, error_class,
                              error_message, traceback, details, created_at)
    SELECT id, status, 'task_cancelled', attempts, %(worker)s, error_class, error_message,
           traceback, details, now()
    FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'task_cancelled', 'count', count(*), 'worker', %(worker)s::text,
        'ids', (array_agg(id ORDER BY id))[1:100])::text) AS sent
    FROM upd HAVING count(*) > 0
), settle AS (
    SELECT task_settle_dependents(array_agg(id)) FROM upd WHERE has_dependents
)
SELECT upd.id FROM upd CROSS JOIN (SELECT count(*) FROM note) n LEFT JOIN settle ON true

-- name: release_runs --
-- A stopping worker hands runs back (fenced): `queued` and due now, or `cancelled` if asked.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(details)s::text[],
                         %(error_classes)s::text[], %(error_messages)s::text[],
                         %(tracebacks)s::text[])
           AS i(id, attempt, details, error_class, error_message, traceback)
), upd AS (
    UPDATE tasks t
    SET status = CASE WHEN t.cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
        updated_at = now(), locked_by = NULL, locked_until = NULL,
        finished_at = CASE WHEN t.cancel_requested_at IS NULL THEN NULL ELSE now() END
    FROM input i
    -- Found by id; status and owner are checked on the row (`|| ''`: never through an
    -- index on status, which on stale statistics would walk every running task).
    WHERE t.id = ANY(%(ids)s::bigint[]) AND t.id = i.id AND t.status || '' = 'running'
      AND t.locked_by = %(worker)s
      AND t.attempts = i.attempt
    RETURNING t.id, t.status, t.attempts, i.details, i.error_class, i.error_message,
              i.traceback, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, error_class,
                              error_message, traceback, details, created_at)
    -- A released run is handed back, not ended: only a cancelled one records its error.
    SELECT id, status,
           CASE status WHEN 'queued' THEN 'task_released' ELSE 'task_cancelled' END,
           attempts, %(worker)s,
           CASE status WHEN 'cancelled' THEN error_class ELSE '' END,
           CASE status WHEN 'cancelled' THEN error_message ELSE '' END,
           CASE status WHEN 'cancelled' THEN traceback ELSE '' END,
           details, now()
    FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', CASE status WHEN 'queued' THEN 'task_released' ELSE 'task_cancelled' END,
        'count', count(*), 'worker', %(worker)s::text,
        'ids', (array_agg(id ORDER BY id))[1:100])::text) AS sent
    FROM upd GROUP BY status
), settle AS (
    SELECT task_settle_dependents(array_agg(id)) FROM upd
    WHERE has_dependents AND status = 'cancelled'
)
SELECT upd.id FROM upd CROSS JOIN (SELECT count(*) FROM note) n LEFT JOIN settle ON true

-- name: decline_runs --
-- A worker that cannot run these tasks (fenced) hands them back due now, the attempt its
-- claim counted taken back, so another worker runs them; `cancelled` if asked meanwhile
-- (and its waiting children with it).
-- The history row names the worker and why it could not run the task.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(details)s::text[],
                         %(error_classes)s::text[], %(error_messages)s::text[],
                         %(tracebacks)s::text[])
           AS i(id, attempt, details, error_class, error_message, traceback)
), upd AS (
    UPDATE tasks t
    SET status = CASE WHEN t.cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
        attempts = t.attempts - 1, progress = NULL, updated_at = now(), locked_by = NULL,
        locked_until = NULL,
        finished_at = CASE WHEN t.cancel_requested_at IS NULL THEN NULL ELSE now() END
    FROM input i
    -- Found by id; status and owner are checked on the row (`|| ''`: never through an
    -- index on status, which on stale statistics would walk every running task).
    WHERE t.id = ANY(%(ids)s::bigint[]) AND t.id = i.id AND t.status || '' = 'running'
      AND t.locked_by = %(worker)s
      AND t.attempts = i.attempt
    RETURNING t.id, t.status, i.attempt, i.details, i.error_class, i.error_message,
              i.traceback, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, error_class,
                              error_message, traceback, details, created_at)
    SELECT id, status,
           CASE status WHEN 'queued' THEN 'task_released' ELSE 'task_cancelled' END,
           attempt, %(worker)s, error_class, error_message, traceback, details, now()
    FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', CASE status WHEN 'queued' THEN 'task_released' ELSE 'task_cancelled' END,
        'count', count(*), 'worker', %(worker)s::text,
        'ids', (array_agg(id ORDER BY id))[1:100])::text) AS sent
    FROM upd GROUP BY status
), settle AS (
    -- A cancelled parent cancels its waiting children (migration 0006).
    SELECT task_settle_dependents(array_agg(id)) FROM upd
    WHERE has_dependents AND status = 'cancelled'
)
SELECT upd.id FROM upd CROSS JOIN (SELECT count(*) FROM note) n LEFT JOIN settle ON true

-- name: select_expired --
-- Lock up to `limit` running tasks whose lease expired, oldest lease first.
SELECT id, retry_count, locked_by, locked_until FROM tasks
WHERE status = 'running' AND locked_until < now()
ORDER BY locked_until LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: rescue_expired --
-- Settle runs of lost workers like failed runs: retry after the delay, fail, or cancel.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(delays)s::float8[], %(workers)s::text[],
                         %(leases)s::timestamptz[]) AS i(id, delay, worker, lease_end)
), upd AS (
    UPDATE tasks t
    -- The after-failure rule (migration 0004): cancelled if asked, else retrying while
    -- retries are left, else failed.
    SET status = task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                           t.max_retries),
        retry_count = CASE task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                                     t.max_retries)
                      WHEN 'retrying' THEN t.retry_count + 1 ELSE t.retry_count END,
        run_at = CASE task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                                t.max_retries)
                 WHEN 'retrying' THEN now() + make_interval(secs => i.delay) ELSE t.run_at END,
        finished_at = CASE task_status_after_failure(t.cancel_requested_at, t.retry_count,
                                                     t.max_retries)
                      WHEN 'retrying' THEN NULL ELSE now() END,
        last_error = format('worker %%s lost: lease expired at %%s', i.worker, i.lease_end),
        updated_at = now(), locked_by = NULL, locked_until = NULL
    FROM input i
    WHERE t.id = i.id AND t.status = 'running' AND t.locked_until < now()
    RETURNING t.id, t.status, t.attempts, t.retry_count, t.max_retries, t.last_error,
              i.worker, i.delay, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, error_class,
                              error_message, traceback, details, created_at)
    SELECT id, status, 'lease_expired', attempts, coalesce(worker, ''),
           'tasks.exceptions.WorkerLost', last_error, '',
           last_error || CASE status
               WHEN 'retrying' THEN format('; requeued: retry %%s of %%s in %%ss', retry_count,
                                           max_retries, round(delay::numeric, 1))
               WHEN 'cancelled' THEN '; cancelled as requested'
               ELSE '; no retries left' END,
           now()
    FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'lease_expired',
        'count', (SELECT count(*) FROM upd),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM upd ORDER BY id LIMIT 100) s)
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM upd)
), settle AS (
    SELECT task_settle_dependents(array_agg(id)) FROM upd
    WHERE has_dependents AND status IN ('failed', 'cancelled')
)
SELECT upd.id, upd.status FROM upd LEFT JOIN note ON true LEFT JOIN settle ON true

-- name: reap_workers --
-- Forget up to `limit` workers silent for `window` seconds; one worker_offline event each.
WITH gone AS (
    DELETE FROM task_workers WHERE id IN (
        SELECT id FROM task_workers
        WHERE last_seen < now() - make_interval(secs => %(window)s)
        ORDER BY last_seen LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    RETURNING id
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'worker_offline', 'worker', id, 'count', 0, 'ids', '[]'::json)::text)
    FROM gone
)
SELECT gone.id FROM gone CROSS JOIN (SELECT count(*) FROM note) n ORDER BY gone.id

-- name: register_worker --
-- Record a worker (or refresh its last_seen) and announce it with worker_online.
WITH reg AS (
    INSERT INTO task_workers (id, hostname, pid, queues, types, concurrency, started_at,
                              last_seen)
    VALUES (%(worker)s, %(hostname)s, %(pid)s, %(queues)s::jsonb, %(types)s::jsonb,
            %(concurrency)s, now(), now())
    ON CONFLICT (id) DO UPDATE SET last_seen = now()
    RETURNING id
)
SELECT reg.id, pg_notify('taskservice', json_build_object(
    'event', 'worker_online', 'worker', reg.id, 'count', 0, 'ids', '[]'::json)::text)
FROM reg

-- name: unregister_worker --
-- Forget a stopping worker and announce it with worker_offline (even if it was reaped).
WITH gone AS (
    DELETE FROM task_workers WHERE id = %(worker)s RETURNING id
)
SELECT (SELECT count(*) FROM gone), pg_notify('taskservice', json_build_object(
    'event', 'worker_offline', 'worker', %(worker)s::text, 'count', 0,
    'ids', '[]'::json)::text)

-- name: cancel_tasks --
-- A person cancels tasks: waiting, queued or retrying ones end `cancelled` (and their
-- children with them), running ones get cancel_requested.
-- Returns per task found: id, event (NULL: skipped, finished) and the status it had.
-- Locked in id order (no deadlock) and waited for, not skipped: a cancel must see a claim
-- in flight. A running task asked before counts as cancel_requested but writes nothing.
-- One event per kind; the single-task form also names the worker running the task.
WITH locked AS MATERIALIZED (
    SELECT id, status, cancel_requested_at, coalesce(locked_by, '') AS worker FROM tasks
    WHERE id = ANY(%(ids)s::bigint[])
    ORDER BY id
    FOR UPDATE
), upd AS (
    UPDATE tasks t
    SET status = CASE WHEN l.status = 'running' THEN t.status ELSE 'cancelled' END,
        finished_at = CASE WHEN l.status = 'running' THEN t.finished_at ELSE now() END,
        cancel_requested_at = now(), updated_at = now()
    FROM locked l
    WHERE t.id = l.id
      AND (l.status IN ('waiting', 'queued', 'retrying')
           OR (l.status = 'running' AND l.cancel_requested_at IS NULL))
    RETURNING t.id, t.status, t.attempts, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT upd.id, upd.status,
           CASE upd.status WHEN 'running' THEN 'cancel_requested' ELSE 'task_cancelled' END,
           upd.attempts, CASE upd.status WHEN 'running' THEN l.worker ELSE '' END,
           %(details)s, now()
    FROM upd JOIN locked l ON l.id = upd.id
), outcome AS (
    SELECT l.id, l.status, l.worker,
           CASE WHEN l.status IN ('waiting', 'queued', 'retrying') THEN 'task_cancelled'
                WHEN l.status = 'running' THEN 'cancel_requested' END AS event
    FROM locked l
), note AS (
    SELECT pg_notify('taskservice', CASE WHEN %(single)s::boolean
        THEN json_build_object('event', event, 'count', count(*),
                               'ids', (array_agg(id ORDER BY id))[1:100], 'worker', min(worker))
        ELSE json_build_object('event', event, 'count', count(*),
                               'ids', (array_agg(id ORDER BY id))[1:100]) END::text) AS sent
    FROM outcome WHERE event IS NOT NULL GROUP BY event
), settle AS (
    SELECT task_settle_dependents(array_agg(id)) FROM upd
    WHERE has_dependents AND status = 'cancelled'
)
SELECT outcome.id, outcome.event, outcome.status
FROM outcome CROSS JOIN (SELECT count(*) FROM note) n LEFT JOIN settle ON true
ORDER BY outcome.id

-- name: lock_for_retry --
-- Lock tasks a person re-runs and their parents, in one pass in id order, before
-- retry_tasks reads the parents' status. A parent ending meanwhile waits for the retry,
-- then sees its child waiting; one that ended first is seen as ended by the retry. One
-- pass in one order: two retries of overlapping tasks (a parent and its child among them)
-- queue behind each other instead of deadlocking.
SELECT id FROM tasks
WHERE id IN (SELECT unnest(%(ids)s::bigint[])
             UNION
             SELECT parent_id FROM task_dependencies WHERE child_id = ANY(%(ids)s::bigint[]))
ORDER BY id
FOR UPDATE

-- name: retry_tasks --
-- A person re-runs failed or cancelled tasks: `queued`, retries and progress reset; due
-- now, or at a run_at still in the future (a scheduled task keeps its time) unless
-- `run_now`; `waiting` instead while a parent has not succeeded (or, for
-- on_parent_failure 'run', not ended); the children their failure cancelled wait again.
-- Returns per task found: id, whether it was retried, and the status it had. Locked in
-- id order and waited for (with their parents, first: lock_for_retry); one event per
-- kind (task_requeued wakes workers, task_waiting does not).
WITH locked AS MATERIALIZED (
    SELECT id, status, on_parent_failure FROM tasks
    WHERE id = ANY(%(ids)s::bigint[])
    ORDER BY id
    FOR UPDATE
), unmet AS (
    -- The rule of task_settle_dependents (migration 0006) for releasing a waiting child.
    SELECT l.id FROM locked l
    WHERE l.status IN ('failed', 'cancelled') AND EXISTS (
        SELECT 1 FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
        WHERE d.child_id = l.id AND p.status <> 'succeeded'
          AND NOT (l.on_parent_failure = 'run' AND p.status IN ('failed', 'cancelled')))
), upd AS (
    UPDATE tasks t
    SET status = CASE WHEN t.id IN (SELECT id FROM unmet) THEN 'waiting' ELSE 'queued' END,
        retry_count = 0,
        run_at = CASE WHEN %(run_now)s::boolean THEN now() ELSE greatest(t.run_at, now()) END,
        finished_at = NULL,
        cancel_requested_at = NULL, locked_by = NULL, locked_until = NULL, result = NULL,
        failed_parent_id = NULL, progress = NULL, updated_at = now()
    FROM locked l
    WHERE t.id = l.id AND l.status IN ('failed', 'cancelled')
    RETURNING t.id, t.status, t.attempts, t.has_dependents
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, status,
           CASE status WHEN 'waiting' THEN 'task_waiting' ELSE 'task_requeued' END, attempts,
           '',
           CASE status WHEN 'waiting' THEN %(details)s || '; waiting for its parents'
                ELSE %(details)s END,
           now()
    FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', CASE status WHEN 'waiting' THEN 'task_waiting' ELSE 'task_requeued' END,
        'count', count(*), 'ids', (array_agg(id ORDER BY id))[1:100])::text) AS sent
    FROM upd GROUP BY status
), rewait AS (
    SELECT task_rewait_dependents(array_agg(id)) FROM upd WHERE has_dependents
)
SELECT l.id, upd.id IS NOT NULL, l.status
FROM locked l LEFT JOIN upd ON upd.id = l.id CROSS JOIN (SELECT count(*) FROM note) n
LEFT JOIN rewait ON true
ORDER BY l.id

-- name: run_now_tasks --
-- A person runs deferred tasks now: queued or retrying ones due later become due at once,
-- the progress of an earlier run cleared.
-- Returns per task found: id, whether it was made due, its status and whether it was
-- deferred. Locked in id order and waited for; one task_run_now event (workers wake on it).
WITH locked AS MATERIALIZED (
    SELECT id, status, run_at > now() AS deferred FROM tasks
    WHERE id = ANY(%(ids)s::bigint[])
    ORDER BY id
    FOR UPDATE
), upd AS (
    UPDATE tasks t
    SET run_at = now(), progress = NULL, updated_at = now()
    FROM locked l
    WHERE t.id = l.id AND l.status IN ('queued', 'retrying') AND l.deferred
    RETURNING t.id, t.status, t.attempts
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, status, 'task_run_now', attempts, '', %(details)s, now() FROM upd
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'task_run_now',
        'count', (SELECT count(*) FROM upd),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM upd ORDER BY id LIMIT 100) s)
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM upd)
)
SELECT l.id, upd.id IS NOT NULL, l.status, l.deferred
FROM locked l LEFT JOIN upd ON upd.id = l.id LEFT JOIN note ON true
ORDER BY l.id

-- name: delete_finished --
-- Delete the given tasks that are finished at this moment, with their history (and the
-- workflows left without tasks); one event.
WITH gone AS (
    DELETE FROM tasks WHERE id IN (
        SELECT id FROM tasks
        WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('succeeded', 'failed', 'cancelled')
        FOR UPDATE)
    RETURNING id, workflow_id
), hist AS (
    DELETE FROM task_history WHERE task_id IN (SELECT id FROM gone)
), flows AS (
    DELETE FROM task_workflows w
    WHERE w.id IN (SELECT workflow_id FROM gone)
      AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.workflow_id = w.id
                                              AND t.id NOT IN (SELECT id FROM gone))
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'tasks_deleted',
        'count', (SELECT count(*) FROM gone),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM gone ORDER BY id LIMIT 100) s)
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM gone)
)
SELECT gone.id FROM gone LEFT JOIN note ON true ORDER BY gone.id

-- name: lock_prunable --
-- Lock the next window of tasks finished before a cutoff: its tasks of one status, with kin.
-- The window is the next `limit` tasks in (finished_at, id) order after the position
-- (after_at, after_id) that finished more than `age` seconds ago, whatever their status
-- (idx_finished_at; the limit bounds the scan). Its tasks of `status` are locked with
-- their kin, which prune_finished may delete with them: their parents (a parent kept for
-- its child goes with it), the tasks up their failed_parent_id links (what cancelled
-- them, transitively) and every task those cancelled in turn; finished ones only (a
-- running parent is never held up). SKIP LOCKED: a task someone holds waits for a later
-- run. Returns the locked ids and the window's length and last position. The recursive
-- parts start from tasks with a failed parent or with dependents only (few, by the
-- column statistics), so the plan stays cheap.
WITH RECURSIVE scan AS MATERIALIZED (
    SELECT id, status, finished_at FROM tasks
    WHERE finished_at IS NOT NULL
      AND finished_at < now() - make_interval(secs => %(age)s)
      AND finished_at >= %(after_at)s AND (finished_at, id) > (%(after_at)s, %(after_id)s)
    ORDER BY finished_at, id
    LIMIT %(limit)s
), seeds AS MATERIALIZED (
    SELECT id FROM scan WHERE status = %(status)s
    UNION
    SELECT d.parent_id FROM task_dependencies d
    WHERE d.child_id IN (SELECT id FROM scan WHERE status = %(status)s)
), up (id) AS (
    SELECT t.failed_parent_id FROM tasks t
    WHERE t.id IN (SELECT id FROM seeds) AND t.failed_parent_id IS NOT NULL
    UNION
    SELECT t.failed_parent_id FROM up JOIN tasks t ON t.id = up.id
    WHERE t.failed_parent_id IS NOT NULL
), top AS MATERIALIZED (
    SELECT id FROM seeds UNION SELECT id FROM up
), down (id) AS (
    SELECT c.id FROM tasks t JOIN tasks c ON c.failed_parent_id = t.id
    WHERE t.id IN (SELECT id FROM top) AND t.has_dependents
    UNION
    SELECT c.id FROM down JOIN tasks c ON c.failed_parent_id = down.id
), locked AS (
    SELECT id FROM tasks
    WHERE id IN (SELECT id FROM top UNION SELECT id FROM down) AND finished_at IS NOT NULL
    ORDER BY id FOR UPDATE SKIP LOCKED
)
SELECT (SELECT coalesce(array_agg(id ORDER BY id), ARRAY[]::bigint[]) FROM locked),
       (SELECT count(*) FROM scan), last.finished_at, last.id
FROM (SELECT 1) one
LEFT JOIN (SELECT finished_at, id FROM scan ORDER BY finished_at DESC, id DESC LIMIT 1) last
    ON true

-- name: prune_finished --
-- Delete the given locked tasks that may go now, their history and emptied workflows.
-- A task may go when it finished longer ago than its status's retention (`statuses` with
-- `ages` in seconds; a status not listed is kept) and nothing keeps it. A task that stays
-- keeps its parents unless it succeeded (a child that may still run or be retried reads
-- every parent's result: ctx.parent_results stays whole), and the tasks its failure
-- cancelled (failed_parent_id: a retry of it brings them back); a task whose cancelling
-- failure stays, stays. The re-check is here, in the deleting statement, after
-- lock_prunable locked `ids` in the same transaction: it sees every change made before
-- those locks, nobody can add a child to a locked task, and the children it relies on
-- are locked here (FOR KEY SHARE: a retry waits; one someone holds counts as staying and
-- unfinished). Not a transition: no history row (the history goes with its task); one
-- tasks_pruned event. Returns per final status: tasks and history rows deleted, and the
-- workflows deleted.
WITH RECURSIVE retention AS (
    SELECT * FROM unnest(%(statuses)s::text[], %(ages)s::float8[]) AS r(status, age)
    WHERE r.age > 0
), edges AS MATERIALIZED (
    SELECT parent_id, child_id FROM task_dependencies WHERE parent_id = ANY(%(ids)s::bigint[])
), children AS MATERIALIZED (
    SELECT id, status FROM tasks WHERE id IN (SELECT child_id FROM edges)
    FOR KEY SHARE SKIP LOCKED
), given AS MATERIALIZED (
    SELECT id, status, finished_at, failed_parent_id FROM tasks
    WHERE id = ANY(%(ids)s::bigint[])
), expired AS MATERIALIZED (
    SELECT t.id, t.failed_parent_id FROM given t JOIN retention r ON r.status = t.status
    WHERE t.finished_at < now() - make_interval(secs => r.age)
), links AS MATERIALIZED (
    -- (a task that stays, a task it keeps)
    SELECT e.child_id AS stays, e.parent_id AS keeps
    FROM edges e LEFT JOIN children c ON c.id = e.child_id
    WHERE c.status IS DISTINCT FROM 'succeeded'
    UNION ALL
    SELECT failed_parent_id, id FROM expired WHERE failed_parent_id IS NOT NULL
), kept (id) AS (
    SELECT e.child_id FROM edges e WHERE e.child_id NOT IN (SELECT id FROM expired)
    UNION
    SELECT e.id FROM expired e
    WHERE e.failed_parent_id NOT IN (SELECT id FROM expired)
      AND EXISTS (SELECT 1 FROM tasks p WHERE p.id = e.failed_parent_id)
    UNION
    SELECT l.keeps FROM kept k JOIN links l ON l.stays = k.id
), gone AS (
    DELETE FROM tasks
    WHERE id IN (SELECT id FROM expired) AND id NOT IN (SELECT id FROM kept)
    RETURNING id, status, workflow_id
), hist AS (
    DELETE FROM task_history WHERE task_id IN (SELECT id FROM gone) RETURNING task_id
), flows AS (
    DELETE FROM task_workflows w
    WHERE w.id IN (SELECT workflow_id FROM gone)
      AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.workflow_id = w.id
                                              AND t.id NOT IN (SELECT id FROM gone))
    RETURNING w.id
), per_status AS (
    SELECT g.status, count(DISTINCT g.id) AS tasks, count(h.task_id) AS history
    FROM gone g LEFT JOIN hist h ON h.task_id = g.id GROUP BY g.status
), note AS (
    SELECT pg_notify('taskservice', json_build_object(
        'event', 'tasks_pruned', 'status', %(status)s::text,
        'count', (SELECT count(*) FROM gone), 'history', (SELECT count(*) FROM hist),
        'workflows', (SELECT count(*) FROM flows),
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM gone ORDER BY id LIMIT 100) s)
    )::text) AS sent
    WHERE EXISTS (SELECT 1 FROM gone)
)
SELECT p.status, p.tasks, p.history, (SELECT count(*) FROM flows)
FROM per_status p LEFT JOIN note ON true ORDER BY p.status

-- name: count_prunable --
-- About what pruning would delete of one status now: its tasks past retention whose
-- children succeeded or may go too (see prune_finished), and their history rows.
WITH retention AS (
    SELECT * FROM unnest(%(statuses)s::text[], %(ages)s::float8[]) AS r(status, age)
    WHERE r.age > 0
), expired AS MATERIALIZED (
    SELECT t.id FROM tasks t JOIN retention r ON r.status = t.status
    WHERE t.status = %(status)s AND t.finished_at IS NOT NULL
      AND t.finished_at < now() - make_interval(secs => r.age)
      AND (NOT t.has_dependents OR NOT EXISTS (
          SELECT 1 FROM task_dependencies d JOIN tasks c ON c.id = d.child_id
          WHERE d.parent_id = t.id AND c.status <> 'succeeded' AND NOT EXISTS (
              SELECT 1 FROM retention rc WHERE rc.status = c.status
                AND c.finished_at < now() - make_interval(secs => rc.age))))
)
SELECT (SELECT count(*) FROM expired),
       (SELECT count(*) FROM task_history h WHERE h.task_id IN (SELECT id FROM expired))

-- name: send_event --
-- Send one event, built by tasks/engine/events.py payload(), inside the current transaction.
SELECT pg_notify(%(channel)s, %(payload)s)
