"""Adapters to the outside world: SMS and email providers, the sandbox outbox,
HL7 v2 and FHIR inbound. Each keeps its SDK's types to itself and speaks the
orchestrator's core values at its edge.

No connector ships yet: the foundation simulates sends on a virtual clock.
"""

__all__: list[str] = []
