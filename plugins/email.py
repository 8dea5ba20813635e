"""`send_email`: sends one message through Django's email framework (EMAIL_BACKEND)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email

from plugins.base import PayloadError, Plugin, TaskContext

MAX_RECIPIENTS = 100


class SendEmail(Plugin):
    description = "Sends an email: to (one or more addresses), subject, body"
    supports_cancel = False

    def validate(self, payload: dict) -> dict:
        payload = super().validate(payload)
        errors: dict[str, list[str]] = {}
        to = payload.get("to")
        if isinstance(to, str):
            to = [to]
        if not to or not isinstance(to, list):
            errors["to"] = ["Required: an email address or a non-empty list of them."]
        elif len(to) > MAX_RECIPIENTS:
            errors["to"] = [f"At most {MAX_RECIPIENTS} recipients."]
        else:
            bad = []
            for address in to:
                try:
                    if not isinstance(address, str):
                        raise ValidationError("not a string")
                    validate_email(address)
                except ValidationError:
                    bad.append(str(address))
            if bad:
                errors["to"] = [f"Not a valid email address: {', '.join(bad)}."]
        for field in ("subject", "body"):
            value = payload.get(field)
            if not isinstance(value, str) or (field == "subject" and not value.strip()):
                errors[field] = ["Required: a non-empty string." if field == "subject"
                                 else "Required: a string."]
        subject = payload.get("subject")
        if isinstance(subject, str) and ("\n" in subject or "\r" in subject):
            errors["subject"] = ["Must be one line."]
        sender = payload.get("from")
        if sender is not None:
            try:
                if not isinstance(sender, str) or "\n" in sender or "\r" in sender:
                    raise ValidationError("not one line of text")
                validate_email(sender)
            except ValidationError:
                errors["from"] = ["Must be a valid email address."]
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
