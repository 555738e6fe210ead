"""ASGI entry point: HTTP through Django, websockets through Channels (served by Daphne), housekeeping
started before the first request of either."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from runner.e2b_api import with_e2b_api  # noqa: E402
from runner.middleware import HousekeepingMiddleware, WebsocketOriginValidator  # noqa: E402
from runner.routing import websocket_urlpatterns  # noqa: E402

# HousekeepingMiddleware: a restarted server settles a dead process's runs before its first answer.
application = HousekeepingMiddleware(ProtocolTypeRouter(
    {
        # E2B's routes (runner/e2b_api) are served beside Sandpit's own, at the root.
        "http": with_e2b_api(django_asgi_app),
        # The Origin must be the site's own (scheme, host and port) or in CSRF_TRUSTED_ORIGINS.
        "websocket": WebsocketOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
))
