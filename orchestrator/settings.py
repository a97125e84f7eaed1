"""Configuration: one settings class read from `ORCHESTRATOR_*` variables.

Only entry points build it; everything below them receives values.
Command-line flags override it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .flows.timing import parse_duration
from .insight.privacy import SMALL
from .journey import DEFAULT_SETTLE_AFTER
from .policies.staleness import DEFAULT_STALE_AFTER
from .roles import Role, parse_role_tokens

__all__ = ["API_TOKEN_MIN_LENGTH", "LEASE_TO_SEND", "SenderRate", "Settings"]

# A lease is at least this many times the longest send (see `_lease_outlasts_a_send`).
LEASE_TO_SEND = 3
# A guessable token is no guard; an empty one would turn authentication off.
API_TOKEN_MIN_LENGTH = 16

_SHORTEST_STALE_AFTER = timedelta(minutes=1)
_LONGEST_STALE_AFTER = timedelta(days=7)
_LONGEST_SETTLE_AFTER = timedelta(days=3653)


class SenderRate(BaseModel):
    """One sender's pace in `ORCHESTRATOR_SENDER_RATES`: a rate, or a rate and a burst.

    A rate of 0, or "off", turns the sender's pacing off.
    """

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(ge=0, description="segments (SMS) or messages (email) a second; 0: off")
    burst: float | None = Field(None, ge=1, description="the bucket's capacity")

    @model_validator(mode="before")
    @classmethod
    def _bare_rate(cls, value: object) -> object:
        # `{"+15550100": 1}` is shorthand for `{"+15550100": {"rate": 1}}`; "off" for rate 0.
        if isinstance(value, str) and value.strip().lower() == "off":
            return {"rate": 0}
        return {"rate": value} if isinstance(value, int | float) else value


class Settings(BaseSettings):
    # Tokens and credentials are settings: an error never echoes the value given.
    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_", extra="ignore", hide_input_in_errors=True
    )

    flows: Path = Path("flows")
    templates: Path = Path("templates")
    samples: Path = Field(
        Path("samples/events"), description="event files (*.jsonl) the console's what-if plays"
    )
    template_cache: str | None = Field(
        None,
        description="where `flows validate` and `simulate` keep compiled "
        'template code for the next run: a directory of this user\'s alone, or "off" '
        "(default $XDG_CACHE_HOME/orchestrator/templates, or ~/.cache/...)",
    )
    db: str = "sqlite:///orchestrator.db"
    default_region: str = Field("US", description="region for phone numbers written without +")

    host: str = "127.0.0.1"
    port: int = 8000
    api_token: SecretStr | None = Field(
        None,
        description=f"bearer token, at least {API_TOKEN_MIN_LENGTH} characters; "
        "required to bind beyond loopback (or ORCHESTRATOR_API_TOKENS); the admin role's token",
    )
    api_tokens: SecretStr | None = Field(
        None,
        description='more tokens, each with its role: a JSON object {"<token>": "<role>", ...}; '
        "roles are admin, operations and marketing",
    )
    max_body_bytes: int = 5 * 1024 * 1024

    org_name: str = "Riverside Health"
    org_phone: str = "+1 555 0100"
    public_url: str = "http://127.0.0.1:8000"
    portal_url: str = "https://portal.example.org"

    dispatch: bool = Field(
        True,
        description="run the dispatch loop in this process (`run`, `worker`); off: it only "
        "takes events in, and `orchestrator dispatch` processes send (consumers and "
        "dispatchers scale apart)",
    )
    dispatch_batch: int = 100
    dispatch_poll_seconds: float = 1.0
    lease_seconds: float = Field(
        120.0, gt=0, description="how long a claim holds; renewed every third of it while sending"
    )
    max_attempts: int = 5
    retry_backoff_seconds: float = 30.0
    import_hold_seconds: float = Field(
        300.0,
        ge=1,
        le=86_400,
        description="how long an import's messages stay held after its latest batch "
        "(`ingest --history`): the longest one batch may take",
    )
    stale_after: timedelta = Field(
        DEFAULT_STALE_AFTER,
        description="how late a message whose flow gives no `expires` may still be sent "
        '(a duration such as "24h" or "90m", or seconds)',
    )

    settle_after: timedelta = Field(
        DEFAULT_SETTLE_AFTER,
        description="how long a journey keeps its events for a late one to be folded in its "
        "place; older ones fold in at the journey's horizon, and episodes over for longer "
        'settle out of it (a duration such as "30d", longer than ORCHESTRATOR_STALE_AFTER)',
    )

    small_count_threshold: int = Field(
        SMALL,
        ge=1,
        le=SMALL,
        description=f"counts from 1 below this are hidden on aggregate pages (default {SMALL}); "
        "a pilot may lower it, and while it does every console page says so",
    )

    mllp_port: int | None = Field(None, description="HL7 v2 MLLP listener port (off when unset)")
    mllp_idle_timeout: float = Field(60.0, description="seconds a silent MLLP client is kept")
    mllp_frame_timeout: float = Field(
        120.0, description="seconds one MLLP frame may take to arrive (slow clients)"
    )
    mllp_max_bytes: int = Field(1 << 20, description="largest HL7 v2 message taken over MLLP")
    hl7_timezone: str | None = Field(
        None, description="facility time zone for HL7 v2 times sent without an offset"
    )
    hl7_assigning_authority: str | None = Field(
        None, description="PID-3 assigning authority whose identifier is the patient id"
    )
    inbound_services: dict[str, str] = Field(
        default_factory=dict,
        description="HL7 v2 / FHIR service codes to flow service names (JSON object)",
    )

    twilio_api_base: str | None = None
    sendgrid_api_base: str | None = None

    # Real channels: each takes over from the sandbox once its credentials are set.
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from_number: str | None = None
    twilio_timeout_seconds: float = 10.0
    sendgrid_api_key: SecretStr | None = None
    sendgrid_sender: str | None = None
    sendgrid_timeout_seconds: float = 10.0
    sendgrid_webhook_public_key: str | None = Field(
        None, description="the Signed Event Webhook verification key (base64 DER)"
    )
    sendgrid_webhook_tolerance_seconds: int = 600
    sms_help_text: str = (
        "Riverside Health reminders. Call +1 555 0100 for help. Reply STOP to opt out."
    )
    test_phone: str | None = Field(
        None, description="where `flows preview --send-to-test` sends an SMS (E.164)"
    )
    test_email: str | None = Field(
        None, description="where `flows preview --send-to-test` sends an email"
    )
    sandbox_latency_seconds: float = Field(
        0.0, ge=0, description="how long a sandbox send takes, as a provider's answer would"
    )
    dispatch_concurrency: int = Field(
        16, ge=1, description="messages sent at once through network connectors"
    )
    # Pacing to the provider: a token bucket per sender and channel, in the store.
    pacing: bool = Field(
        True, description="pace sends to each sender's rate (off: no sender is paced)"
    )
    sms_rate: float | None = Field(
        None,
        ge=0,
        description="SMS segments a second per sender, 0: not paced (default by sender: "
        "short code 100, toll-free 3, other numbers 1; a messaging service and the sandbox "
        "are not paced)",
    )
    sms_burst: float | None = Field(
        None, ge=1, description="SMS segments a sender may take at once (default: a second's)"
    )
    email_rate: float | None = Field(
        None,
        ge=0,
        description="emails a second per sender, 0: not paced (default 100 for a SendGrid "
        "sender; the sandbox is not paced)",
    )
    email_burst: float | None = Field(
        None, ge=1, description="emails a sender may take at once (default: a second's)"
    )
    sender_rates: dict[str, SenderRate] = Field(
        default_factory=dict,
        description='per sender, over the channel\'s rate: {"<sender>": rate} or '
        '{"<sender>": {"rate": r, "burst": b}} (JSON object); a rate of 0 or "off": not paced',
    )
    # The Kafka runtime (`orchestrator worker`, `topics create`, `ingest --broker`).
    broker: str = Field("kafka://127.0.0.1:9092", description="kafka://HOST:PORT")
    kafka_group: str = Field("orchestrator", description="consumer group (the Faust app id)")
    kafka_partitions: int = 8
    kafka_batch: int = 500
    kafka_batch_seconds: float = 0.2
    kafka_session_timeout_seconds: float = 30.0
    kafka_commit_seconds: float = 1.0

    @field_validator("api_token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        # An empty value set in the environment is a token that guards nothing, not
        # "no token": refused, so that neither the bind guard nor the check is skipped.
        if token is not None and len(token.get_secret_value()) < API_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"ORCHESTRATOR_API_TOKEN: expected at least {API_TOKEN_MIN_LENGTH} characters"
            )
        return token

    @field_validator("test_phone")
    @classmethod
    def _test_phone_e164(cls, phone: str | None, info: ValidationInfo) -> str | None:
        # Written as people write numbers ("+1 555 555 0100"); sent as E.164.
        if not phone:
            return None
        import phonenumbers

        try:
            number = phonenumbers.parse(phone, info.data.get("default_region", "US"))
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_possible_number(number):
            raise ValueError(
                "ORCHESTRATOR_TEST_PHONE: expected a phone number such as +15555550100"
            )
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("api_tokens")
    @classmethod
    def _tokens_with_known_roles(cls, tokens: SecretStr | None) -> SecretStr | None:
        # Kept as a secret string (so that no error echoes a token) and parsed here
        # once to refuse a bad one at startup; `role_tokens` parses it again.
        if tokens is not None:
            parse_role_tokens(tokens.get_secret_value(), min_length=API_TOKEN_MIN_LENGTH)
        return tokens

    def template_cache_dir(self) -> Path | None:
        """The directory ORCHESTRATOR_TEMPLATE_CACHE names (its default when unset); None: off."""
        from .template_cache import default_directory

        value = (self.template_cache or "").strip()
        if value.lower() == "off":
            return None
        return Path(value).expanduser() if value else default_directory()

    def role_tokens(self) -> dict[str, Role]:
        """Every accepted token with its role: ORCHESTRATOR_API_TOKEN is an admin's.

        Empty: no token is set, and the API is open (loopback development).
        """
        roles: dict[str, Role] = {}
        if self.api_tokens is not None:
            text = self.api_tokens.get_secret_value()
            roles.update(parse_role_tokens(text, min_length=API_TOKEN_MIN_LENGTH))
        if self.api_token is not None:
            roles[self.api_token.get_secret_value()] = Role.ADMIN
        return roles

    @field_validator("stale_after", "settle_after", mode="before")
    @classmethod
    def _duration_text(cls, value: object, info: ValidationInfo) -> object:
        # The flows' own duration syntax ("24h", "1d12h"), whole seconds, or ISO 8601.
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.isdigit():
            return int(text)
        if text[:1] in ("P", "p"):
            return text  # ISO 8601 ("PT24H"), which pydantic reads
        try:
            return parse_duration(text)
        except ValueError:
            raise ValueError(
                f"ORCHESTRATOR_{(info.field_name or '').upper()}: expected a duration "
                'such as "24h" or "90m", or a number of seconds'
            ) from None

    @field_validator("stale_after")
    @classmethod
    def _sane_limit(cls, limit: timedelta) -> timedelta:
        # Below a minute, dispatch latency alone would expire messages; past a week a
        # message without its own expiry is no longer timely (a flow that means
        # longer says so with `expires`).
        if not _SHORTEST_STALE_AFTER <= limit <= _LONGEST_STALE_AFTER:
            raise ValueError(
                "ORCHESTRATOR_STALE_AFTER: expected a duration from 1 minute to 7 days"
            )
        return limit

    @field_validator("hl7_timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        # Checked here, not per message: a bad zone would otherwise fail every message.
        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"ORCHESTRATOR_HL7_TIMEZONE: {name!r} is not an IANA time zone "
                "(for example America/New_York)"
            ) from None
        return name

    @model_validator(mode="after")
    def _settled_messages_are_stale(self) -> Settings:
        # An episode settles once its messages were due before the horizon: they
        # must be past their staleness limit by then, so none could still be sent.
        if not self.stale_after < self.settle_after <= _LONGEST_SETTLE_AFTER:
            raise ValueError(
                "ORCHESTRATOR_SETTLE_AFTER: expected a duration longer than "
                f"ORCHESTRATOR_STALE_AFTER ({self.stale_after}) and at most 10 years"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # The dispatcher renews its batch's lease every third of it, between
        # sends: one send (a provider timeout, at worst) must fit in a third,
        # or another process could take over messages this one is sending.
        longest = max(self._send_timeouts().items(), key=lambda item: item[1])
        if self.lease_seconds < LEASE_TO_SEND * longest[1]:
            raise ValueError(
                f"ORCHESTRATOR_LEASE_SECONDS must be at least {LEASE_TO_SEND} times the longest "
                f"send ({longest[0]}, {longest[1]:g} s): {self.lease_seconds:g} s is too short"
            )
        return self

    def _send_timeouts(self) -> dict[str, float]:
        """The longest one send may take on each channel in use, by the setting that bounds it."""
        timeouts = {"ORCHESTRATOR_SANDBOX_LATENCY_SECONDS": self.sandbox_latency_seconds}
        if self.twilio_account_sid or self.twilio_auth_token:
            timeouts["ORCHESTRATOR_TWILIO_TIMEOUT_SECONDS"] = self.twilio_timeout_seconds
        if self.sendgrid_api_key or self.sendgrid_sender:
            timeouts["ORCHESTRATOR_SENDGRID_TIMEOUT_SECONDS"] = self.sendgrid_timeout_seconds
        return timeouts
