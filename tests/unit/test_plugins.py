"""Payload validation of the built-in plugins: good payloads are cleaned, bad ones are
rejected with errors keyed by the payload field at fault."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.db import connections
from django.test import override_settings

from plugins.base import PayloadError
from plugins.email import MAX_RECIPIENTS, SendEmail
from plugins.query import RunQuery
from plugins.simulate import Simulate
from tasks import engine
from tasks.exceptions import InvalidTask
from tests.support.query_db import configured


def errors_of(plugin, payload) -> dict[str, list[str]]:
    with pytest.raises(PayloadError) as excinfo:
        plugin.validate(payload)
    return excinfo.value.errors


# --- send_email ----------------------------------------------------------------------


def test_send_email_accepts_one_address_and_normalises_to_a_list():
    cleaned = SendEmail().validate({"to": "ada@example.com", "subject": "Hi", "body": ""})
    assert cleaned == {"to": ["ada@example.com"], "subject": "Hi", "body": ""}


def test_send_email_accepts_a_list_of_addresses():
    payload = {"to": ["a@example.com", "b@example.org"], "subject": "Hi", "body": "text"}
    assert SendEmail().validate(payload)["to"] == ["a@example.com", "b@example.org"]


@pytest.mark.parametrize("to", [None, [], 5, {"a": "b"}])
def test_send_email_requires_recipients(to):
    payload = {"subject": "Hi", "body": "x"} if to is None else {"to": to, "subject": "Hi",
                                                                   "body": "x"}
    errors = errors_of(SendEmail(), payload)
    assert list(errors) == ["to"]
    assert "Required" in errors["to"][0]


def test_send_email_rejects_an_empty_address():
    errors = errors_of(SendEmail(), {"to": "", "subject": "Hi", "body": "x"})
    assert list(errors) == ["to"]


def test_send_email_names_each_invalid_address():
    errors = errors_of(SendEmail(), {"to": ["ok@example.com", "not-an-address", 7],
                                     "subject": "Hi", "body": "x"})
    assert list(errors) == ["to"]
    assert "not-an-address" in errors["to"][0]
    assert "7" in errors["to"][0]
    assert "ok@example.com" not in errors["to"][0]


def test_send_email_limits_recipients():
    to = [f"u{i}@example.com" for i in range(MAX_RECIPIENTS + 1)]
    errors = errors_of(SendEmail(), {"to": to, "subject": "Hi", "body": "x"})
    assert errors["to"] == [f"At most {MAX_RECIPIENTS} recipients."]


@pytest.mark.parametrize(
    "payload, field, fragment",
    [
        ({"to": "a@example.com", "body": "x"}, "subject", "Required"),
        ({"to": "a@example.com", "subject": "   ", "body": "x"}, "subject", "Required"),
        ({"to": "a@example.com", "subject": "a\nBcc: x@evil", "body": "x"}, "subject",
         "one line"),
        ({"to": "a@example.com", "subject": "Hi"}, "body", "Required"),
        ({"to": "a@example.com", "subject": "Hi", "body": 12}, "body", "Required"),
    ],
)
def test_send_email_field_errors(payload, field, fragment):
    errors = errors_of(SendEmail(), payload)
    assert list(errors) == [field]
    assert fragment in errors[field][0]


def test_send_email_reports_every_bad_field_at_once():
    errors = errors_of(SendEmail(), {"to": "nope", "subject": 3, "body": None})
    assert set(errors) == {"to", "subject", "body"}


@pytest.mark.parametrize("sender", [5, "not an address", "a@example.com\nBcc: x@evil.org"])
def test_send_email_validates_an_optional_from(sender):
    errors = errors_of(SendEmail(), {"to": "a@example.com", "subject": "Hi", "body": "x",
                                     "from": sender})
    assert list(errors) == ["from"]


def test_send_email_accepts_a_valid_from():
    payload = {"to": "a@example.com", "subject": "Hi", "body": "x", "from": "ops@example.com"}
    assert SendEmail().validate(payload)["from"] == "ops@example.com"


HEADER_BREAKERS = ["\r", "\n", "\x00", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\x1c",
                   "\x7f", "\t"]


@pytest.mark.parametrize("char", HEADER_BREAKERS)
def test_send_email_refuses_line_breaks_and_controls_in_every_header_field(char):
    payload = {"to": ["ok@example.com", f"a@example.com{char}Bcc: x@evil.org"],
               "subject": f"Hi{char}Bcc: x@evil.org", "body": "line one\nline two",
               "from": f"ops@example.com{char}"}
    errors = errors_of(SendEmail(), payload)
    assert set(errors) == {"to", "subject", "from"}
    code = f"U+{ord(char):04X}"
    assert errors["subject"] == [f"Must be one line without control characters (found {code})."]
    assert errors["from"] == errors["subject"]
    assert errors["to"][1] == errors["subject"][0]
    assert "ok@example.com" not in errors["to"][0]
    assert all("\n" not in message and "\r" not in message for message in errors["to"])


def test_send_email_keeps_unicode_text_and_a_multiline_body():
    payload = {"to": "a@example.com", "subject": "Résumé ✓ – 日本", "body": "a\r\nb\u2028c"}
    assert SendEmail().validate(payload)["subject"] == "Résumé ✓ – 日本"


@pytest.mark.parametrize("field", ["cc", "bcc", "reply_to", "headers", "Subject"])
def test_send_email_refuses_fields_it_does_not_support(field):
    errors = errors_of(SendEmail(), {"to": "a@example.com", "subject": "Hi", "body": "x",
                                     field: "x@evil.org"})
    assert errors == {field: ["Unknown field; send_email takes only: to, subject, body, from."]}


def test_send_email_unknown_fields_reach_the_api_caller_as_field_errors():
    with pytest.raises(InvalidTask) as excinfo:
        engine.prepare(name="mail", type="send_email",
                       payload={"to": "a@example.com", "subject": "Hi", "body": "x",
                               "bcc": ["x@evil.org"]})
    assert "send_email takes only" in excinfo.value.errors["payload"]["bcc"][0]


def test_payload_must_be_an_object():
    errors = errors_of(SendEmail(), ["to", "subject"])
    assert errors == {"payload": ["Payload must be a JSON object."]}


# --- run_query -----------------------------------------------------------------------
# Validation judges the configuration from settings alone: no connection is made here.

QUERY_URL = "postgresql://reader@db.example.com:5432/reports"


@pytest.fixture
def query_configured():
    with configured(QUERY_URL):
        yield


def test_run_query_accepts_one_statement_and_strips_the_semicolon(query_configured):
    cleaned = RunQuery().validate({"sql": "  SELECT 1;  ", "params": [1]})
    assert cleaned["sql"] == "SELECT 1"
    assert cleaned["params"] == [1]


def test_run_query_accepts_query_as_an_alias_of_sql(query_configured):
    assert RunQuery().validate({"query": "SELECT %(x)s", "params": {"x": 1}})["sql"] == (
        "SELECT %(x)s"
    )


@pytest.mark.parametrize(
    "payload, field, fragment",
    [
        ({}, "sql", "Required"),
        ({"sql": "   "}, "sql", "Required"),
        ({"sql": 42}, "sql", "Required"),
        ({"sql": "SELECT 1; DROP TABLE tasks"}, "sql", "Only one statement"),
        ({"sql": "SELECT 1", "params": "1"}, "params", "list or an object"),
        ({"sql": "SELECT 1", "database": "default"}, "database", "TASKS_QUERY_DATABASE_URL"),
        ({"sql": "SELECT 1", "database": "nowhere"}, "database", "Not accepted"),
        ({"sql": "SELECT 1", "max_rows": -1}, "max_rows", "0 to 10000"),
        ({"sql": "SELECT 1", "max_rows": 10001}, "max_rows", "0 to 10000"),
        ({"sql": "SELECT 1", "max_rows": True}, "max_rows", "0 to 10000"),
        ({"sql": "SELECT 1", "max_rows": "5"}, "max_rows", "0 to 10000"),
    ],
)
def test_run_query_field_errors(query_configured, payload, field, fragment):
    errors = errors_of(RunQuery(), payload)
    assert list(errors) == [field]
    assert fragment in errors[field][0]


def test_run_query_is_off_until_a_query_database_is_configured():
    with override_settings(TASKS_QUERY_DATABASE=""):
        errors = errors_of(RunQuery(), {"sql": "SELECT 1"})
        with pytest.raises(InvalidTask) as excinfo:
            engine.prepare(name="q", type="run_query", payload={"sql": "SELECT 1"})
    assert "run_query is off" in errors["payload"][0]
    assert "TASKS_QUERY_DATABASE_URL" in errors["payload"][0]
    assert "TASKS_QUERY_DATABASE_URL" in str(excinfo.value)


@pytest.mark.parametrize("alias, fragment", [
    ("default", "never runs on the service's own database"),
    ("elsewhere", "which DATABASES does not define"),
])
def test_run_query_refuses_a_bad_alias(alias, fragment):
    with override_settings(TASKS_QUERY_DATABASE=alias):
        errors = errors_of(RunQuery(), {"sql": "SELECT 1"})
    assert fragment in errors["payload"][0]


def test_run_query_refuses_an_alias_for_the_services_own_database():
    default = connections.settings["default"]
    host = default["HOST"] or "localhost"
    url = (f"postgresql://someone@/{default['NAME']}?host={quote(host)}"  # a Unix socket
           if host.startswith("/") else
           f"postgresql://someone@{host}:{default['PORT'] or 5432}/{default['NAME']}")
    with configured(url):
        errors = errors_of(RunQuery(), {"sql": "SELECT 1"})
    assert "points at the service's own database" in errors["payload"][0]


def test_run_query_has_no_database_option():
    with pytest.raises(ValueError, match="TASKS_QUERY_DATABASE_URL"):
        RunQuery(database="default")


# --- simulate ------------------------------------------------------------------------


def test_simulate_accepts_its_fields_and_ignores_unknown_ones():
    payload = {"duration": 0.5, "failure_rate": 1, "timeout_rate": 0.0,
               "to": "anything", "sql": "whatever"}
    assert Simulate().validate(payload) == payload
    assert Simulate().validate({}) == {}


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"duration": -1}, "duration"),
        ({"duration": "3"}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": 86401}, "duration"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"failure_rate": -0.1}, "failure_rate"),
        ({"failure_rate": "0.5"}, "failure_rate"),
        ({"timeout_rate": 2}, "timeout_rate"),
        ({"timeout_rate": None}, "timeout_rate"),
    ],
)
def test_simulate_field_errors(payload, field):
    errors = errors_of(Simulate(), payload)
    assert list(errors) == [field]


def test_simulate_rejects_bad_options():
    with pytest.raises(PayloadError) as excinfo:
        Simulate(failure_rate=3)
    assert list(excinfo.value.errors) == ["failure_rate"]


# --- the errors reach enqueue's InvalidTask under "payload" ---------------------------


def test_enqueue_validation_nests_the_plugin_field_errors():
    with pytest.raises(InvalidTask) as excinfo:
        engine.prepare(name="mail", type="send_email", payload={"to": "nope", "subject": "Hi",
                                                                "body": "x"})
    assert set(excinfo.value.errors) == {"payload"}
    assert "nope" in excinfo.value.errors["payload"]["to"][0]
    assert "payload.to" in str(excinfo.value)


def test_enqueue_validation_stores_the_cleaned_payload():
    prepared = engine.prepare(name="mail", type="send_email",
                              payload={"to": "a@example.com", "subject": "Hi", "body": "x"})
    assert '"to":["a@example.com"]' in prepared.payload_json
