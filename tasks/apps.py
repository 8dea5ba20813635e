from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Task Service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from plugins import query_checks, registry

        query_checks.register()

        registry.load()
