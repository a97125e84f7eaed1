"""The real channels from settings: Twilio for SMS and SendGrid for email, when configured.

Each takes over from the sandbox only when its credentials and sender are
all set; a half-configured channel is an error, not a silent sandbox.
"""

from __future__ import annotations

import logging

from ..clock import Clock
from ..errors import OrchestratorError
from ..event import Channel
from ..ports import Connector, EventIntake, Recipients
from ..settings import Settings
from .feedback import Feedback

__all__ = ["ChannelConfigError", "real_connectors"]

log = logging.getLogger(__name__)


class ChannelConfigError(OrchestratorError):
    """A real channel is partly configured (names the missing setting)."""


def real_connectors(
    settings: Settings, recipients: Recipients, clock: Clock, deferred: EventIntake
) -> dict[Channel, Connector]:
    """The connectors whose credentials are set, by channel.

    An opt-out a connector learns while it sends (Twilio 21610) goes to
    `deferred`, an intake that keeps it (committed) to take later: the send
    thread does not run the processor.

    Raises:
        ChannelConfigError: credentials without a sender, or the reverse.
    """
    from connectors.sendgrid import SendGridConfig, SendGridConnector
    from connectors.twilio import TwilioConfig, TwilioConnector

    found: dict[Channel, Connector] = {}
    public = settings.public_url.rstrip("/")
    if settings.twilio_account_sid or settings.twilio_auth_token:
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ChannelConfigError(
                "Twilio needs both ORCHESTRATOR_TWILIO_ACCOUNT_SID and ..._AUTH_TOKEN"
            )
        if not (settings.twilio_messaging_service_sid or settings.twilio_from_number):
            raise ChannelConfigError(
                "Twilio needs ORCHESTRATOR_TWILIO_MESSAGING_SERVICE_SID or ..._FROM_NUMBER"
            )
        feedback = Feedback(deferred, recipients, clock)

        def opted_out(key: str) -> int:
            return feedback.consent_for_message(
                key, Channel.SMS, granted=False, source="twilio", ref=f"21610-{key}"
            )

        found[Channel.SMS] = TwilioConnector(
            TwilioConfig(
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token.get_secret_value(),
                messaging_service_sid=settings.twilio_messaging_service_sid,
                from_number=settings.twilio_from_number,
                status_callback=f"{public}/webhooks/twilio/status",
                api_base=settings.twilio_api_base,
                timeout=settings.twilio_timeout_seconds,
                pool_size=max(1, settings.dispatch_concurrency),
            ),
            on_opt_out=opted_out,
            clock=clock,
        )
        log.info("channels.twilio", extra={"channel": "sms"})
    if settings.sendgrid_api_key or settings.sendgrid_sender:
        if not (settings.sendgrid_api_key and settings.sendgrid_sender):
            raise ChannelConfigError(
                "SendGrid needs both ORCHESTRATOR_SENDGRID_API_KEY and ..._SENDER"
            )
        found[Channel.EMAIL] = SendGridConnector(
            SendGridConfig(
                api_key=settings.sendgrid_api_key.get_secret_value(),
                sender=settings.sendgrid_sender,
                api_base=settings.sendgrid_api_base,
                timeout=settings.sendgrid_timeout_seconds,
            )
        )
        log.info("channels.sendgrid", extra={"channel": "email"})
    return found
