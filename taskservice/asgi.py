"""ASGI entry point (daphne): HTTP, and websockets for the live admin.

HTTP passes the body limits of taskservice.edge first (in daphne's own request, before
it buffers a body, and again around the app). Websockets pass the Origin check by
scheme, host and port (taskservice.ws_origin), then the session login
(AuthMiddlewareStack); the consumers themselves admit staff only.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskservice.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: they touch models and settings.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from tasks.live.routing import websocket_urlpatterns  # noqa: E402
from taskservice import daphne_edge  # noqa: E402
from taskservice.edge import BodyLimit  # noqa: E402
from taskservice.ws_origin import OriginValidator  # noqa: E402

# Under daphne the limit must act before Twisted buffers the body; under any other ASGI
# server, BodyLimit below does it as the body streams in.
daphne_edge.install()

http_app = django_asgi_app
if settings.DEBUG and "whitenoise.middleware.WhiteNoiseMiddleware" not in settings.MIDDLEWARE:
    # daphne serves no static files itself; in development do what runserver does.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter({
    "http": BodyLimit(http_app),
    "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
