"""The example project's settings, plus the REST baseline of item 6 (its URL and its table)."""

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS, REST_FRAMEWORK

# One user runs every stream of a burst: the per-user run throttle (30/minute) would refuse most of them.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"chatmodel_run": "1000000/minute"}}

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ROOT_URLCONF = "bench.urls"
