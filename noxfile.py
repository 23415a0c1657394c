"""The support matrix: the lowest and the highest supported combination, each in a fresh virtualenv.

``make matrix`` runs both (it puts pyenv's interpreters on PATH). Each session installs the package from the
checkout with its test extra, pins the combination's ends, and runs the suite on SQLite. The browser tests and
the scale-out tests (PostgreSQL + Redis) are left to ``make test`` / ``make test-postgres`` on the default
interpreter, so a session takes minutes rather than tens of minutes.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lowest", "highest"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

# The two ends of every range in pyproject.toml that the app depends on; keep them in step with it.
LOWEST = {
    "python": "3.11",
    "django": "Django==5.2.*",
    "drf": "djangorestframework==3.15.*",
    "litellm": "litellm==1.108.0",
}
HIGHEST = {
    "python": "3.13",
    "django": "Django==6.1.*",
    "drf": "djangorestframework==3.18.*",
    "litellm": "litellm==1.110.2",
}

VERSIONS = (
    "import sys, importlib.metadata as m; print('Python', sys.version.split()[0], "
    "*(f'{n} {m.version(n)}' for n in ('Django', 'djangorestframework', 'litellm', 'chatmodel-app')))"
)
PYTEST = ["pytest", "-m", "not scaleout", "--ignore=tests/browser", "-q", "-x"]


def _suite(session: nox.Session, combo: dict[str, str]) -> None:
    # A regular (not editable) install: the wheel is built from the checkout as a user's pip would build it.
    session.install(".[test]", combo["django"], combo["drf"], combo["litellm"])
    session.run("python", "-c", VERSIONS)
    session.run("python", "-X", "faulthandler", "-m", *PYTEST, *session.posargs)


@nox.session(python=LOWEST["python"])
def lowest(session: nox.Session) -> None:
    """Python 3.11, Django 5.2 LTS, DRF 3.15 and the lowest supported LiteLLM."""
    _suite(session, LOWEST)


@nox.session(python=HIGHEST["python"])
def highest(session: nox.Session) -> None:
    """Python 3.13, Django 6.1, DRF 3.18 and the highest supported LiteLLM."""
    _suite(session, HIGHEST)
