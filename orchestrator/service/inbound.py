"""The EHR inbound side of the embedded runtime: HL7 v2 over MLLP beside HTTP.

`build_hl7_intake` turns a built service into the intake (the mapping from
the settings is `hl7_settings.hl7_config`, apart so that `convert` loads none
of this); `serve` runs uvicorn and the MLLP listener on one event loop and
stops both together.
"""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from connectors.hl7_intake import Hl7Intake
from connectors.mllp import MllpServer

from ..ports import Input
from ..store import InboundArchive
from .hl7_settings import hl7_config
from .runtime import Runtime as EmbeddedService

__all__ = ["build_hl7_intake", "build_mllp_server", "hl7_config", "serve"]

log = logging.getLogger(__name__)


def build_hl7_intake(service: EmbeddedService) -> Hl7Intake:
    """The HL7 v2 intake over the runtime's intake and the store's archive."""
    return Hl7Intake(
        intake=service.intake,
        archive=InboundArchive(service.store),
        clock=service.clock,
        config=hl7_config(service.settings),
    )


def build_mllp_server(service: EmbeddedService) -> MllpServer:
    """The MLLP listener over the service's intake (not yet listening)."""
    settings = service.settings
    hl7 = build_hl7_intake(service)

    def reject(body: bytes, reason: str) -> None:
        # Not HL7 at all (a broken frame): kept by the one intake like any refusal.
        service.intake.take("mllp", [Input.refused(body, reason)])

    return MllpServer(
        hl7.handle,
        reject,
        service.clock.now,
        idle_timeout=settings.mllp_idle_timeout,
        frame_timeout=settings.mllp_frame_timeout,
        max_frame=settings.mllp_max_bytes,
    )


async def serve(app: FastAPI, service: EmbeddedService, mllp_port: int) -> None:
    """HTTP and MLLP in one process, one event loop; returns when uvicorn stops."""
    settings = service.settings
    listener = build_mllp_server(service)
    port = await listener.start(settings.host, mllp_port)
    log.info("mllp.listening", extra={"port": port})
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            timeout_graceful_shutdown=30,
        )
    )
    try:
        await server.serve()
    finally:
        await listener.stop()
