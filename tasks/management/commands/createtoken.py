"""manage.py createtoken USERNAME: print the user's REST API token (created if needed)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print a user's API token, creating it (and with --create-user, the user) if needed."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true",
                            help="Create the user (without a password) if it does not exist.")
        parser.add_argument("--reset", action="store_true",
                            help="Replace an existing token with a new one.")

    def handle(self, *args, username: str, create_user: bool, reset: bool, **options):
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            if not create_user:
                raise CommandError(
                    f"No user {username!r}. Pass --create-user to create one.") from None
            user = User.objects.create_user(username=username)  # no password: token only
        if reset:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
