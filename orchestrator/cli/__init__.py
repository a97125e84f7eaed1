"""The `orchestrator` command line (Typer): one app, a module per command group."""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
