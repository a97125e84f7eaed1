"""Adapters to the outside world: SMS and email providers, the sandbox outbox,
HL7 v2 and FHIR inbound. Each keeps its SDK's types to itself and speaks the
orchestrator's core values at its edge.

The sandbox is the default for both channels; Twilio and SendGrid take over
once their credentials are set (`orchestrator.runtime.channels`).
"""

__all__: list[str] = []
