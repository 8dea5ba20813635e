"""Statuses spelled in SQL are the sets tasks/states.py names.

SQL keeps its status literals (`status IN ('queued', 'retrying')`): the planner matches a
partial index's predicate only against literals, and a parameter would lose it. So this
test reads every literal set in the engine's statements, the read models' SQL and the
models' index conditions, and holds each to a named set of tasks/states.py (CLAIMABLE,
ACTIVE, FINISHED, ...): a set that drifts from its rule fails here. A single status
(`status = 'running'`) must at least be a status.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tasks import states

ROOT = Path(__file__).resolve().parents[2]
SQL_FILES = ["tasks/engine/queries.sql"]
# Modules whose string constants carry SQL that reads tasks (their own or a wing's).
SQL_MODULES = ["tasks/selectors.py", "tasks/workflow_selectors.py", "tasks/metrics.py",
               "tasks/live/dashboard.py", "tasks/live/charts.py"]
MODELS = "tasks/models.py"

_LITERALS = r"'[a-z_]+'(?:\s*,\s*'[a-z_]+')*"
SET_PATTERNS = [
    re.compile(rf"\bstatus\s+(?:NOT\s+)?IN\s*\(\s*({_LITERALS})\s*\)", re.IGNORECASE),
    re.compile(rf"\bstatus\s*(?:=|<>|!=)\s*ANY\s*\(\s*ARRAY\s*\[\s*({_LITERALS})\s*\]",
               re.IGNORECASE),
    re.compile(r"\bstatus\s*(?:=|<>|!=)\s*ANY\s*\(\s*'\{([a-z_,\s]+)\}'", re.IGNORECASE),
]
SINGLE = re.compile(r"\bstatus\s*(?:=|<>|!=)\s*'([a-z_]+)'", re.IGNORECASE)
MODEL_SET = re.compile(r"\bstatus__in\s*=\s*[\[(]([^\])]*)[\])]")
MODEL_SINGLE = re.compile(r"\bstatus\s*=\s*\"([a-z_]+)\"")

# Literal sets that match no named set; an entry whose set is gone must leave the list.
UNNAMED: set[tuple[str, frozenset[str]]] = set()


def named_sets() -> dict[frozenset[str], str]:
    """{set of statuses: its name(s) in tasks/states.py}."""
    named: dict[frozenset[str], str] = {}
    for name, value in sorted(vars(states).items()):
        if isinstance(value, frozenset) and value and value <= set(states.Status.values):
            key = frozenset(str(s) for s in value)
            named[key] = f"{named[key]}/{name}" if key in named else name
    return named


def _statuses(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z_]+", text))


def sql_texts(path: str) -> list[str]:
    source = (ROOT / path).read_text()
    if path.endswith(".sql"):
        return [source]
    return [node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def found_in(texts: list[str]) -> tuple[list[frozenset[str]], list[str]]:
    """(the literal sets, the single statuses) the SQL in `texts` compares `status` with."""
    sets, singles = [], []
    for text in texts:
        for pattern in SET_PATTERNS:
            sets += [_statuses(m.group(1)) for m in pattern.finditer(text)]
        singles += SINGLE.findall(text)
    return sets, singles


def model_conditions() -> tuple[list[frozenset[str]], list[str]]:
    source = (ROOT / MODELS).read_text()
    return ([_statuses(m.group(1)) for m in MODEL_SET.finditer(source)],
            MODEL_SINGLE.findall(source))


def test_every_literal_status_set_is_a_named_set():
    named = named_sets()
    unnamed, seen = [], set()
    for path in [*SQL_FILES, *SQL_MODULES]:
        sets, _ = found_in(sql_texts(path))
        assert sets or path in SQL_MODULES, f"{path}: no status set found (pattern broken?)"
        for found in sets:
            if found in named:
                continue
            seen.add((path, found))
            if (path, found) not in UNNAMED:
                unnamed.append(f"{path}: {sorted(found)}")
    sets, _ = model_conditions()
    assert sets, "models.py: no status__in condition found"
    unnamed += [f"{MODELS}: {sorted(s)}" for s in sets if s not in named]
    assert not unnamed, ("status sets that tasks/states.py does not name "
                         f"(named: {sorted(named.values())}): {unnamed}")
    assert seen == UNNAMED, f"no longer found, drop from UNNAMED: {UNNAMED - seen}"


def test_every_single_status_is_a_status():
    singles = [s for path in [*SQL_FILES, *SQL_MODULES] for s in found_in(sql_texts(path))[1]]
    singles += model_conditions()[1]
    assert singles
    assert set(singles) <= set(states.Status.values), set(singles) - set(states.Status.values)


def test_the_patterns_find_each_way_of_spelling_a_set():
    sql = ("WHERE t.status IN ('queued', 'retrying') AND status = ANY(ARRAY['failed', "
           "'cancelled']) OR status = ANY('{succeeded,failed}') AND x.status = 'runing'")
    sets, singles = found_in([sql])
    assert sets == [frozenset({"queued", "retrying"}), frozenset({"failed", "cancelled"}),
                    frozenset({"succeeded", "failed"})]
    assert singles == ["runing"]
    assert named_sets()[frozenset({"queued", "retrying"})] == "CLAIMABLE"
    assert frozenset({"succeeded", "running"}) not in named_sets()
