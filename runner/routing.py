from django.urls import path

from runner.consumers import SessionConsumer

websocket_urlpatterns = [
    # Channels' URLRouter takes Django's path() with an ASGI app; django-stubs types path() for views only.
    path("ws/sessions/<uuid:session_id>/", SessionConsumer.as_asgi()),  # type: ignore[arg-type]
]
