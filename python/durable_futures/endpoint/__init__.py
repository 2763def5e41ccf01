"""The Restate endpoint: an ASGI app that an unmodified restate-server registers and calls."""

from .asgi import asgi_app

__all__ = ["asgi_app"]
