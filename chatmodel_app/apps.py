from django.apps import AppConfig


class ChatModelAppConfig(AppConfig):
    name = "chatmodel_app"
    verbose_name = "Chat model hosting"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .services.titles import title_after_run
        from .signals import run_finished

        # Conversation titles after the first exchange (named conversations).
        run_finished.connect(title_after_run, dispatch_uid="chatmodel_app.titles")
