"""Settings of the example site. Everything works offline with no API key."""

import importlib.util
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Secrets come from the environment; the fallback is for local development only.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-insecure-dev-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "daphne",  # first, so runserver serves ASGI (HTTP and websockets)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "chatmodel_app",
]
# The API page (/api/docs/, Swagger UI) needs its JavaScript served from here, not from a CDN: drf-spectacular-sidecar
# ships it. Without that package the header links the YAML schema instead.
if importlib.util.find_spec("drf_spectacular_sidecar") is not None:
    INSTALLED_APPS.append("drf_spectacular_sidecar")
    SPECTACULAR_SETTINGS = {"SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR", "REDOC_DIST": "SIDECAR"}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
ASGI_APPLICATION = "example_project.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default; PostgreSQL when DATABASE_URL is set.
if os.environ.get("DATABASE_URL"):
    import importlib.util

    import dj_database_url

    # CONN_MAX_AGE = 0: under ASGI Django runs each request on a thread of its own, so a persistent connection per
    # thread piles up until PostgreSQL refuses more ("too many clients already"). Connections come from psycopg's
    # pool instead (Django closes them back into it after each request); a worker holds at most
    # DATABASE_POOL_MAX_SIZE, and a request that finds none free waits up to DATABASE_POOL_TIMEOUT seconds. A
    # streamed REST run holds one for its whole length (it runs on a thread of its own), so the default of 40
    # leaves room for that many at once per worker, and for two workers under PostgreSQL's default of 100.
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
    if importlib.util.find_spec("psycopg_pool"):  # psycopg[pool]; without it, a connection per request
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": int(os.environ.get("DATABASE_POOL_MIN_SIZE", "2")),
            "max_size": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "40")),
            "timeout": float(os.environ.get("DATABASE_POOL_TIMEOUT", "30")),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                # Writers queue instead of failing with "database is locked".
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

# The in-memory channel layer by default; Redis when REDIS_URL is set.
if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Room for a long reply's deltas in each socket's queue (overflow is dropped).
            # socket_timeout: redis-py >= 8 defaults to 5 s, which cuts the layer's blocking 5 s BZPOPMIN and
            # closes every idle websocket with 1011 (django/channels_redis#422); longer, but still finite.
            "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 30}], "capacity": 1000},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "chatmodel_app.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The chat page's own JS and CSS (example_project is not an installed app).
STATICFILES_DIRS = [BASE_DIR / "example_project" / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/admin/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Runs of the chatmodel REST API, per user (or per IP for anonymous callers).
    "DEFAULT_THROTTLE_RATES": {"chatmodel_run": os.environ.get("CHATMODEL_RUN_RATE", "30/minute")},
}

# The offline demo model streams a word every 30 ms so the page shows streaming.
CHATMODEL_OFFLINE_TOKEN_DELAY = float(os.environ.get("CHATMODEL_OFFLINE_TOKEN_DELAY", "0.03"))

# Run lease and model timeout (seconds), when the environment sets them (the scale-out tests use a short lease).
if os.environ.get("CHATMODEL_RUN_LEASE_SECONDS"):
    CHATMODEL_RUN_LEASE_SECONDS = int(os.environ["CHATMODEL_RUN_LEASE_SECONDS"])
if os.environ.get("CHATMODEL_TIMEOUT"):
    CHATMODEL_TIMEOUT = float(os.environ["CHATMODEL_TIMEOUT"])
if os.environ.get("CHATMODEL_NUM_RETRIES"):
    CHATMODEL_NUM_RETRIES = int(os.environ["CHATMODEL_NUM_RETRIES"])
if os.environ.get("CHATMODEL_STREAM_COALESCE_MS"):
    CHATMODEL_STREAM_COALESCE_MS = float(os.environ["CHATMODEL_STREAM_COALESCE_MS"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"chatmodel_app": {"handlers": ["console"], "level": "INFO"}},
}
