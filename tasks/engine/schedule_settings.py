"""Schedules defined in code: the TASKS_SCHEDULES setting, {name: fields as the API takes
them}, checked (tasks.checks, at `manage.py check`) and synced by the leader's scheduler
when it starts.

An entry creates its schedule, or updates it to what the entry says (fields the entry
leaves out take their defaults), except `enabled`: a pause or resume by an operator
stands unless the entry states `enabled` itself. An invalid entry is logged and skipped;
the others sync. Schedules not named in the setting are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from tasks.engine.schedules import DEFAULTS, FIELDS, create, update, validate
from tasks.exceptions import InvalidInput
from tasks.models import Schedule

logger = logging.getLogger(__name__)

ACTOR = "settings"


def entry_problems(name: Any, fields: Any) -> dict[str, Any]:
    """Field -> messages for one TASKS_SCHEDULES entry ({} when it makes a valid schedule).
    Reads no database: a name taken by a schedule made elsewhere is found when syncing."""
    if not isinstance(name, str):
        return {"name": ["The entry's key is the schedule's name: a string."]}
    if not isinstance(fields, Mapping):
        return {"non_field_errors": ["Must be a mapping of schedule fields."]}
    errors: dict[str, Any] = {key: ["Unknown field."]
                              for key in sorted(set(fields) - set(FIELDS), key=str)}
    if "name" in fields:
        errors["name"] = ["Given by the entry's key; leave it out."]
    if errors:
        return errors
    try:
        validate({**DEFAULTS, **fields, "name": name})
    except InvalidInput as exc:
        return exc.errors
    return {}


def problems(definitions: Any) -> dict[str, dict[str, Any]]:
    """Entry name -> its problems, for every invalid entry of a TASKS_SCHEDULES value."""
    if not isinstance(definitions, Mapping):
        return {"": {"non_field_errors": ["TASKS_SCHEDULES must be a mapping of names to "
                                          "schedule fields."]}}
    found = {str(name): entry_problems(name, fields) for name, fields in definitions.items()}
    return {name: errors for name, errors in found.items() if errors}


def sync(definitions: Any, *, actor: str = ACTOR) -> list[str]:
    """Create or update the schedules of a TASKS_SCHEDULES value; the names changed.
    Each entry in a transaction of its own: an invalid one is logged and skipped."""
    bad = problems(definitions)
    if "" in bad:
        logger.error("TASKS_SCHEDULES is not a mapping; no schedule synced",
                     extra={"action": "schedule_sync_invalid"})
        return []
    changed = []
    for name, fields in definitions.items():
        errors = bad.get(str(name))
        try:
            if errors:
                raise InvalidInput(errors)
            with transaction.atomic():
                if _sync_one(name, fields, actor):
                    changed.append(name)
        except InvalidInput as exc:
            logger.error("TASKS_SCHEDULES[%r] skipped: %s", name, exc.errors,
                         extra={"action": "schedule_sync_invalid", "schedule_name": str(name)})
    return changed


def _sync_one(name: str, fields: Mapping[str, Any], actor: str) -> bool:
    existing = Schedule.objects.select_for_update().filter(name=name).first()
    if existing is None:
        create(actor=actor, name=name, **fields)
        return True
    # As the entry's fields are saved (the plugin's form of the payload), to compare.
    wanted = {key: value for key, value in validate({**DEFAULTS, **fields, "name": name}).items()
              if key in fields or (key in DEFAULTS and key != "enabled")}
    # Without `enabled` in the entry, the operator's pause or resume stands.
    if any(getattr(existing, key) != value for key, value in wanted.items()):
        update(existing.pk, actor=actor, **wanted)
        return True
    return False
