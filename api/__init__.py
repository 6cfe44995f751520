"""The HTTP API and web console (``imageopt api``): see docs/API.md and ``openapi.yaml``."""

from api.app import create_app, serve

__all__ = ["create_app", "serve"]
