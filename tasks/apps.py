from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _create_type_permissions(sender, using="default", **kwargs) -> None:
    """After migrate: one `enqueue_type_<type>` permission per registered task type."""
    from django.contrib.contenttypes.models import ContentType

    from plugins import registry
    from tasks.authz import ensure_type_permissions

    ContentType.objects.clear_cache()  # a flush (e.g. between tests) removed the rows
    ensure_type_permissions(registry.types())


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Task Service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from plugins import query_checks, registry
        from tasks import checks  # noqa: F401 - registers the checks of a host's settings
        from tasks.djtasks.mapping import TASK_TYPE

        query_checks.register()

        registry.add_builtin(TASK_TYPE, "tasks.djtasks.plugin.DjangoTaskPlugin")
        registry.load()
        # After contrib.auth's own handler (registered earlier), which creates the content
        # type and the model's permissions.
        post_migrate.connect(_create_type_permissions, sender=self,
                             dispatch_uid="tasks.type_permissions")
