"""`send_email`: sends one message through Django's email framework (EMAIL_BACKEND).

Subject, sender and recipients become mail headers, so they are refused at enqueue when
they hold anything that could end a header line: CR and LF, and also every other
character some mail or terminal software treats as a line break or control (NUL, vertical
tab, form feed, NEL U+0085, U+2028, U+2029, ...). Only the fields below are accepted: cc,
bcc, reply_to or extra headers would each be another way to add recipients or headers,
so an unknown field is an error rather than something silently dropped.
"""

from __future__ import annotations

import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email

from plugins.base import PayloadError, Plugin, TaskContext

MAX_RECIPIENTS = 100
FIELDS = ("to", "subject", "body", "from")
# Cc: control characters (C0 with NUL, CR, LF, VT, FF; DEL; C1 with NEL); Zl and Zp: the
# Unicode line and paragraph separators U+2028 and U+2029.
_UNSAFE_CATEGORIES = {"Cc", "Zl", "Zp"}


def unsafe_character(text: str) -> str | None:
    """The first character of `text` unsafe in a header, as U+XXXX, or None."""
    for char in text:
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def _header_error(text: str) -> str | None:
    found = unsafe_character(text)
    if found is None:
        return None
    return f"Must be one line without control characters (found {found})."


def _address_error(value: object) -> str | None:
    if not isinstance(value, str):
        return "not a string"
    if (problem := _header_error(value)) is not None:
        return problem
    try:
        validate_email(value)
    except ValidationError:
        return "not a valid email address"
    return None


class SendEmail(Plugin):
    description = "Sends an email: to (one or more addresses), subject, body, optional from"
    supports_cancel = False

    def validate(self, payload: dict) -> dict:
        payload = super().validate(payload)
        errors: dict[str, list[str]] = {}
        known = ", ".join(FIELDS)
        for key in payload:
            if key not in FIELDS:
                errors[str(key)] = [f"Unknown field; send_email takes only: {known}."]
        to = payload.get("to")
        if isinstance(to, str):
            to = [to]
        if not to or not isinstance(to, list):
            errors["to"] = ["Required: an email address or a non-empty list of them."]
        elif len(to) > MAX_RECIPIENTS:
            errors["to"] = [f"At most {MAX_RECIPIENTS} recipients."]
        else:
            bad = [(address, problem) for address in to
                   if (problem := _address_error(address)) is not None]
            if bad:
                shown = ", ".join(_shown(address) for address, _ in bad)
                errors["to"] = [f"Not a valid email address: {shown}."]
                errors["to"] += sorted({p for _, p in bad if p.startswith("Must")})
        subject = payload.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            errors["subject"] = ["Required: a non-empty string."]
        elif (problem := _header_error(subject)) is not None:
            errors["subject"] = [problem]
        if not isinstance(payload.get("body"), str):
            errors["body"] = ["Required: a string."]
        sender = payload.get("from")
        if sender is not None and (problem := _address_error(sender)) is not None:
            errors["from"] = [problem if problem.startswith("Must")
                              else "Must be a valid email address."]
        if errors:
            raise PayloadError(errors)
        return {**payload, "to": to}

    def run(self, payload: dict, ctx: TaskContext):
        message = EmailMessage(
            subject=payload["subject"],
            body=payload["body"],
            from_email=payload.get("from") or settings.DEFAULT_FROM_EMAIL,
            to=payload["to"],
        )
        sent = message.send(fail_silently=False)
        ctx.logger.info("email sent to %s", ", ".join(payload["to"]))
        return {"sent": sent, "to": payload["to"]}


def _shown(value: object) -> str:
    # An address with a line break is shown escaped, so the error message stays one line.
    return repr(value) if isinstance(value, str) and unsafe_character(value) else str(value)
