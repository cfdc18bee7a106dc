"""The HTTP side service: ``create_app(ApiDeps(...))``."""

from callrouter.api.app import API_PREFIX, create_app
from callrouter.api.deps import ApiDeps, ComponentStatus, status_of_listener
from callrouter.api.notify import EventPublisher

__all__ = [
    "API_PREFIX",
    "ApiDeps",
    "ComponentStatus",
    "EventPublisher",
    "create_app",
    "status_of_listener",
]
