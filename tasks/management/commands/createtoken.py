"""manage.py createtoken USERNAME: print the user's REST API token (created if needed).

Service accounts get exactly the permissions named here (tasks.authz lists them), e.g.
`createtoken billing --create-user --permission view add --type send_email`.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from plugins import registry
from tasks import authz

PERMISSION_NAMES = {**authz.ACTION_PERMISSIONS, "view_all": authz.VIEW_ALL,
                    "any_type": authz.ENQUEUE_ANY}


class Command(BaseCommand):
    help = ("Print a user's API token, creating it (and with --create-user, the user) if "
            "needed; --permission and --type grant what the token may do.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true",
                            help="Create the user (without a password) if it does not exist.")
        parser.add_argument("--reset", action="store_true",
                            help="Replace an existing token with a new one.")
        parser.add_argument(
            "--permission", "-p", action="extend", nargs="+", default=[], metavar="NAME",
            help=f"Grant task permissions: {', '.join(PERMISSION_NAMES)} (or a codename "
                 "such as tasks.cancel_task).")
        parser.add_argument("--type", "-t", action="extend", nargs="+", default=[],
                            dest="types", metavar="TYPE",
                            help="Grant enqueueing of these task types (tasks.enqueue_type_*).")

    def handle(self, *args, username: str, create_user: bool, reset: bool,
               permission: list[str], types: list[str], **options):
        grants = self._permissions(permission, types)
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            if not create_user:
                raise CommandError(
                    f"No user {username!r}. Pass --create-user to create one.") from None
            user = User.objects.create_user(username=username)  # no password: token only
        if grants:
            user.user_permissions.add(*grants)
        if reset:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)

    def _permissions(self, names: list[str], types: list[str]) -> list[Permission]:
        """Every named permission, or a CommandError naming the unknown ones."""
        codenames, unknown = [], []
        for name in names:
            codename = PERMISSION_NAMES.get(name, name.removeprefix(f"{authz.APP}."))
            codenames.append(codename)
        known_types = set(registry.types())
        for type_name in types:
            codename = authz.type_codename(type_name)
            if type_name not in known_types or codename is None:
                unknown.append(f"type {type_name!r}")
            else:
                codenames.append(codename)
        if types:
            authz.ensure_type_permissions([t for t in types if t in known_types])
        found = {p.codename: p for p in Permission.objects.filter(
            content_type__app_label=authz.APP, codename__in=codenames)}
        unknown += [f"permission {c!r}" for c in codenames if c not in found]
        if unknown:
            raise CommandError(
                f"Unknown {', '.join(unknown)}. Permissions: {', '.join(PERMISSION_NAMES)} "
                f"or tasks.<codename>; types: {', '.join(sorted(known_types))}.")
        return list(found.values())
