"""Adapters to the outside world: SMS and email providers, the sandbox outbox,
HL7 v2 and FHIR inbound. Each keeps its SDK's types to itself and speaks the
orchestrator's core values at its edge.

The sandbox is the default for both channels; Twilio and SendGrid take over
once their credentials are set (`orchestrator.runtime.channels`). Connectors implement `orchestrator.ports`
and import nothing of the runtime or the store.
"""

__all__: list[str] = []
