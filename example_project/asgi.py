"""ASGI entry point of the example site: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
django_asgi_app = get_asgi_application()

# After Django is set up: these import models.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatmodel_app.asgi import LiveWorker  # noqa: E402
from chatmodel_app.llm import preload  # noqa: E402
from chatmodel_app.routing import websocket_urlpatterns  # noqa: E402
from chatmodel_app.ws_auth import ChatModelAuthMiddlewareStack, SameOriginValidator  # noqa: E402

# Import litellm (seconds, ~170 MB) on a background thread while the worker starts serving,
# so the first model call does not pay for it. Django start-up itself never imports it.
preload()

# LiveWorker: this worker answers rejoins of its runs (their text so far) from its first connection on.
application = LiveWorker(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Browsers send an Origin header: it must be this site's own, scheme, host and port (no cross-site
            # socket riding on the session cookie), or a CSRF_TRUSTED_ORIGINS one. Then the session cookie or
            # an Authorization token says who it is.
            "websocket": SameOriginValidator(ChatModelAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
