"""ASGI entry point (daphne): HTTP, and websockets for the live admin.

Websockets pass the Origin check against ALLOWED_HOSTS, then the session login
(AuthMiddlewareStack); the consumers themselves admit staff only.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskservice.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: they touch models and settings.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from tasks.routing import websocket_urlpatterns  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG and "whitenoise.middleware.WhiteNoiseMiddleware" not in settings.MIDDLEWARE:
    # daphne serves no static files itself; in development do what runserver does.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter({
    "http": http_app,
    "websocket": AllowedHostsOriginValidator(
        AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    ),
})
