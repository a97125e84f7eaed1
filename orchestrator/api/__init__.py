"""The HTTP surface of the orchestrator."""

from .app import create_app

__all__ = ["create_app"]
