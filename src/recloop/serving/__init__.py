"""The web API: create_app(settings) with one router per resource."""

from recloop.serving.app import create_app

__all__ = ["create_app"]
