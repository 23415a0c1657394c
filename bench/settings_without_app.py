"""The example project's settings without ``chatmodel_app`` (item 5: what the app adds to ``django.setup()``)."""

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "chatmodel_app"]
