"""The HL7 v2 mapping a site configures, read from the settings.

Apart from `inbound.py` (which serves HTTP and MLLP over a store) so that
`convert --from hl7v2`, which needs only the mapping, loads no web server and
no store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.hl7v2 import Hl7Config

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["hl7_config"]


def hl7_config(settings: Settings, source: str = "hl7v2") -> Hl7Config:
    """The HL7 v2 mapping settings."""
    return Hl7Config(
        timezone=settings.hl7_timezone,
        assigning_authority=settings.hl7_assigning_authority,
        services=dict(settings.inbound_services),
        default_region=settings.default_region,
        source=source,
    )
