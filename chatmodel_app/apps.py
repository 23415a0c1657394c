from django.apps import AppConfig


class ChatModelAppConfig(AppConfig):
    name = "chatmodel_app"
    verbose_name = "Chat model hosting"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
