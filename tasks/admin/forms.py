"""The form that enqueues a task by hand, validated by the engine's own rules."""

from __future__ import annotations

from typing import Any

from django import forms

from plugins import registry
from tasks import authz, engine, jsonsafe, selectors, states
from tasks.exceptions import InvalidTask
from tasks.models import Origin, Task


class PayloadField(forms.JSONField):
    """forms.JSONField that does not parse over-deep text (to validate it, or to show it
    again with the form's errors): json.loads recurses, and a RecursionError is a 500."""

    @staticmethod
    def _too_deep(value: Any) -> bool:
        return isinstance(value, str) and jsonsafe.text_depth_exceeds(value,
                                                                      jsonsafe.max_depth())

    def to_python(self, value):
        if self._too_deep(value):
            raise forms.ValidationError(
                f"Nested too deep: a payload may nest at most {jsonsafe.max_depth()} levels "
                f"(TASKS_MAX_JSON_DEPTH).", code="too_deep")
        return super().to_python(value)

    def bound_data(self, data, initial):
        if self._too_deep(data):
            return forms.fields.InvalidJSONInput(data)  # shown again as typed
        value = super().bound_data(data, initial)
        if not isinstance(value, str) and jsonsafe.problem(value, depth_limit=10**9):
            # Dumped again, "\ud800" would be a raw surrogate the page cannot encode.
            return forms.fields.InvalidJSONInput(data)
        return value


class TaskAddForm(forms.ModelForm):
    """Enqueue a task by hand. Validation is the engine's own (tasks.engine.prepare, the
    first step of enqueue), so the form accepts exactly what the API and CLI accept."""

    type = forms.ChoiceField(choices=(), help_text="A registered task type (plugin).")
    payload = PayloadField(
        initial=dict, required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField"}),
        help_text="A JSON object; the task type's plugin validates its fields.")
    max_retries = forms.IntegerField(required=False, help_text="Blank: the service default.")
    timeout_seconds = forms.IntegerField(required=False,
                                         help_text="Blank: the service default.")
    idempotency_key = forms.CharField(required=False, max_length=255,
                                      help_text="Optional: a second task with this key is refused.")
    depends_on = forms.CharField(
        required=False, max_length=20000, label="Depends on",
        help_text="Optional: ids of tasks (comma-separated) that must succeed first.")
    on_parent_failure = forms.ChoiceField(
        required=False, initial="fail",
        choices=[("fail", "fail: cancelled with the parent"), ("run", "run anyway")],
        help_text="With parents: what happens when one fails for good or is cancelled.")

    class Meta:
        model = Task
        fields = ["name", "type", "payload", "priority", "queue", "run_at", "max_retries",
                  "timeout_seconds", "idempotency_key", "depends_on", "on_parent_failure"]

    user: Any = None  # set per request by TaskAdmin.get_form: the types it may submit

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = [t for t in registry.types() if authz.may_enqueue(self.user, t)]
        self.fields["type"].choices = [("", "---------")] + [(t, t) for t in allowed]
        self.fields["run_at"].required = False
        self.fields["run_at"].help_text = "Blank: now. Later: the task waits until then."
        self.spec: dict[str, Any] = {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned  # fix the form's own errors (bad JSON, not a number) first
        spec = {name: cleaned.get(name) for name in self.Meta.fields}
        spec["idempotency_key"] = spec["idempotency_key"] or None
        spec["payload"] = {} if spec["payload"] is None else spec["payload"]
        spec["on_parent_failure"] = spec["on_parent_failure"] or None
        spec["depends_on"] = self._ids(spec["depends_on"] or "")
        if spec["depends_on"] is None:
            self.add_error("depends_on", "Task ids separated by commas, e.g. 12, 15.")
            return cleaned
        try:
            engine.prepare(**spec)
        except InvalidTask as exc:
            self._add_task_errors(exc.errors)
            return cleaned
        visible = set(selectors.tasks(self.user).filter(pk__in=spec["depends_on"])
                      .values_list("pk", flat=True))
        missing = [pk for pk in spec["depends_on"] if pk not in visible]
        if missing:
            self.add_error("depends_on", [f"Task {pk} does not exist." for pk in missing])
        else:
            self.spec = spec
        return cleaned

    @staticmethod
    def _ids(text: str) -> list[int] | None:
        items = [item for item in text.replace(" ", ",").split(",") if item]
        ids = [states.parse_id(item) for item in items]
        return None if None in ids else ids

    def enqueue(self) -> Task:
        """Submit the cleaned task as the form's user (IdempotencyConflict propagates;
        InvalidTask for a parent that does not exist is shown on the form by the admin)."""
        return engine.enqueue(**self.spec, owner=self.user, origin=Origin.ADMIN,
                              parent_scope=authz.owner_scope(self.user))

    def _add_task_errors(self, errors: dict[str, Any]) -> None:
        for name, messages_ in errors.items():
            if name == "payload" and isinstance(messages_, dict):
                # The plugin's own errors, per payload field.
                for key, texts in messages_.items():
                    texts = texts if isinstance(texts, list) else [texts]
                    self.add_error("payload", f"{key}: {' '.join(map(str, texts))}")
                continue
            texts = messages_ if isinstance(messages_, list) else [messages_]
            if name in self.fields:
                self.add_error(name, [str(t) for t in texts])
            else:
                self.add_error(None, f"{name}: {' '.join(map(str, texts))}")
