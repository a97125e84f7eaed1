"""The dispatcher: due messages through the policies, the templates and a connector.

`tick()` claims what is due under a lease and dispatches each message:
the send-time gate (staleness, consent, quiet hours, caps) decides; a
message that may go is rendered in the recipient's language and handed to
the connector of its channel with its idempotency key. Transient errors are
retried with exponential backoff and jitter; a permanent error falls back to
the next usable channel, else the message fails. Every message ends in a
final audited status.

A message marked "sending" whose claimer died is not sent blindly again:
the connector is asked whether it has the key (`find`). Nor is one whose
send ended ambiguously (a timeout after the request may have arrived): it
is held as "sending" until a delivery callback or `find` settles it.

A batch is sent under its lease, and the lease is renewed as the sends go:
each message is marked "sending" (a conditional write from `claimed`) just
before its own send, which renews its lease, and once a third of the lease
has passed a heartbeat renews it for the rest of the batch this claimer
still holds. So an event that cancels or opts out a message of the batch
while earlier ones are with the provider still wins: its mark then fails,
and it is not sent. Settings refuse a lease shorter than three of the longest sends,
so a live dispatcher's lease never runs out between two heartbeats.

With a `pacer`, each send first takes its sender's tokens (`runtime.pacing`),
in the transaction that decides the batch: a send that finds none is held,
rescheduled to the instant the queue before it is paid for (`paced`,
audited with that instant; held again, audited only when the instant moves
by more than `_REAUDIT_PACED`), and takes its tokens then, ahead of new
sends. One whose turn would come only at or past its staleness limit tries
its next usable channels (as after a provider's refusal), else expires
`stale` at once. A send counts toward its recipient's frequency cap only
once it has its tokens: the batch is decided in rounds, a recipient's
first message in the first, its second in the next, each round paced
before the next is decided, so a held message leaves the cap to the next.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TypeVar, cast

from ..clock import Clock
from ..errors import (
    AmbiguousSendError,
    MessageStaleError,
    PermanentSendError,
    RecipientOptedOutError,
    SendError,
    StoreError,
    TemplateError,
    TransientSendError,
    UnstorableError,
)
from ..event import Channel
from ..journey import Journey, ScheduledMessage
from ..message_status import MessageStatus
from ..policies import (
    DEFAULT_STALE_AFTER,
    PACED,
    Defer,
    Expire,
    Send,
    SendContext,
    Suppress,
    contactable,
    decide,
    stale_at,
)
from ..ports import (
    Claim,
    Connector,
    Final,
    MessageLedger,
    Outgoing,
    Receipt,
    SendingFacts,
    Sent,
)
from ..recipients import Contact, contact_for
from ..templates import TemplateSet
from .pacing import Pacer
from .registry import FlowRegistry
from .rendering import Organisation, render_context

__all__ = ["PACED", "Connector", "Dispatcher", "Outgoing", "Receipt"]

# A message held again for its tokens is audited again only when its instant
# moves by more than this: the `paced` row's `due_at` stays within it.
_REAUDIT_PACED = timedelta(minutes=1)

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Ready:
    """A message the gate let through, rendered for its first usable channel."""

    message: ScheduledMessage
    verdict: Send
    outgoing: Outgoing
    fallbacks: tuple[Channel, ...]
    contact: Contact
    relationship: str | None
    journey: Journey | None
    attempt: int = 0  # numbered when the message is marked "sending"


@dataclass(frozen=True, slots=True)
class _Sent:
    receipt: Receipt
    at: datetime


class _Lost:
    """The outcome of a send not made: the heartbeat found the message's claim lost."""


_LOST = _Lost()


@dataclass
class _Heartbeat:
    """The lease on a batch being sent, renewed every third of it while the sends go."""

    store: MessageLedger
    clock: Clock
    owner: str
    lease: timedelta
    held: set[str]
    renewed_at: datetime

    def holds(self, key: str) -> bool:
        """Whether this claimer still holds `key` (renewing the batch's lease when it is due)."""
        now = self.clock.now()
        if now - self.renewed_at >= self.lease / 3:
            self.held = self.store.renew(self.held, self.owner, now + self.lease)
            self.renewed_at = now
            log.debug("dispatch.lease_renewed", extra={"held": len(self.held)})
        return key in self.held


@dataclass
class Dispatcher:
    store: MessageLedger
    flows: FlowRegistry
    templates: TemplateSet
    connectors: Mapping[Channel, Connector]
    clock: Clock
    org: Organisation
    owner: str = "dispatcher"
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 5
    backoff: timedelta = timedelta(seconds=30)
    batch: int = 100
    concurrency: int = 1
    # How late a message whose flow gives it no expiry may still be sent.
    stale_after: timedelta = DEFAULT_STALE_AFTER
    # How long a send whose outcome nobody can tell is asked about, from its due
    # time, when the message has no expiry of its own.
    reconcile_limit: timedelta = timedelta(days=3)
    rng: random.Random = field(default_factory=random.Random)
    # Sends paced to each sender's rate; None sends as fast as the connectors take them.
    pacer: Pacer | None = None
    # A published version's templates over `templates`, made once per version (immutable).
    _layered: dict[tuple[str, int], TemplateSet] = field(default_factory=dict, repr=False)

    def use(self, flows: FlowRegistry) -> None:
        """Run on `flows` from the next message on (a version published meanwhile)."""
        self.flows = flows
        self.__dict__.pop("_longest_cap", None)

    def templates_for(self, flow_id: str, version: int) -> TemplateSet:
        """The templates a version's messages render with: its stored ones over the files."""
        stored = self.flows.templates.get((flow_id, version))
        if not stored:
            return self.templates
        found = self._layered.get((flow_id, version))
        if found is None:
            found = self._layered[(flow_id, version)] = self.templates.over(stored)
        return found

    def tick(self) -> int:
        """Claim what is due now and dispatch it; returns how many were handled.

        A batch goes in phases so that the store commits twice per batch, not
        per message: decide and render each message; record every decision
        and mark the sends "sending" in one transaction; hand the sends to
        the connectors (`concurrency` at a time); record their outcomes in one
        transaction. A crash between the phases leaves messages "sending",
        which the next claimer reconciles with the connector, never resends.
        """
        now = self.clock.now()
        with self.store.holding_connection():
            claims = self.store.claim_due(now, self.owner, now + self.lease, self.batch)
            if claims:
                # One read for the whole batch: patients, consent, recent sends, journeys.
                facts = self.store.sending_facts(
                    [c.message for c in claims], now - self._longest_cap
                )
                self.dispatch(claims, facts)
        return len(claims)

    def dispatch(self, claims: Sequence[Claim], facts: SendingFacts | None = None) -> None:
        """Dispatch claimed messages in the phases of `tick` (`facts`: what was read for them)."""
        if facts is None:
            since = self.clock.now() - self._longest_cap
            facts = self.store.sending_facts([c.message for c in claims], since)
        # Messages caught mid-send by a crash first: asking a provider is I/O,
        # kept out of the batch transaction.
        claims = [
            claim
            for claim in claims
            if claim.status != MessageStatus.SENDING
            or self._guarded(claim.message, self._settled_after_crash, claim) is False
        ]
        with self.store.together():
            # An event may be updating some of these meanwhile: lock them all first.
            self.store.lock_messages(claim.message.key for claim in claims)
            # Tokens taken with the decisions: a rollback gives them back.
            rendered = self._decided(claims, facts)
        ready, outcomes = self._deliver(rendered)
        refused: list[tuple[_Ready, PermanentSendError]] = []
        with self.store.together():
            self.store.lock_messages(item.message.key for item in ready)
            sent: list[tuple[_Ready, _Sent]] = []
            for item, outcome in zip(ready, outcomes, strict=True):
                if isinstance(outcome, _Lost):
                    log.warning("dispatch.claim_lost", extra={"message_key": item.message.key})
                elif isinstance(outcome, _Sent):
                    sent.append((item, outcome))  # the common case: recorded together
                elif self._guarded(item.message, self._settle, item, outcome):
                    refused.append((item, cast(PermanentSendError, outcome)))
            self._record_sent(sent)
        # Rare: a channel refused a message for good; the next ones, one by one.
        for item, error in refused:
            self._guarded(item.message, self._fall_back, item, error)

    def _guarded(
        self, message: ScheduledMessage, step: Callable[..., _T], *args: object
    ) -> _T | None:
        """The per-message boundary: one message that breaks does not stop the others."""
        try:
            return step(*args)
        except UnstorableError as exc:
            # The store refused a value of this message (a NUL on PostgreSQL): it
            # fails alone, recorded from what the store already holds of it.
            self._fail(message, exc.reason)
            return None
        except StoreError:
            raise  # the store is down for every message alike: the loop waits and retries
        except Exception as exc:  # noqa: BLE001 - keep the message's outcome, log the type, go on
            reason = f"dispatch_error:{exc.__class__.__name__}"
            log.error(
                "dispatch.failed",
                extra={"message_key": message.key, "error": exc.__class__.__name__},
            )
            try:
                self.store.finish(
                    message,
                    self.owner,
                    self.clock.now(),
                    MessageStatus.FAILED,
                    reason,
                    attempt_outcome="failed",
                )
            except UnstorableError:
                self._fail(message, reason)
            return None

    def _fail(self, message: ScheduledMessage, reason: str) -> None:
        """Fail a held message from its stored row alone: nothing of its own data is written."""
        log.error("dispatch.failed", extra={"message_key": message.key, "error": reason})
        self.store.fail_held(message.key, self.owner, self.clock.now(), reason)

    @cached_property
    def _longest_cap(self) -> timedelta:
        caps = [
            cap.per for flow in self.flows.versions.values() for cap in flow.frequency_caps.values()
        ]
        return max(caps, default=timedelta(0))

    def _decided(self, claims: Sequence[Claim], facts: SendingFacts) -> list[_Ready]:
        """Decide and pace the batch; the sends that go now (their tokens taken), in order.

        In rounds: a recipient's n-th message of the batch in round n, each
        round decided, then paced, and its sends counted toward their
        recipients' caps, before the next round is decided. A message held
        for its tokens, or expired for want of them, thus never uses up a cap.
        """
        rounds: list[list[Claim]] = []
        seen: dict[tuple[str, str], int] = {}
        for claim in claims:
            recipient = claim.message.recipient
            who = (recipient.patient_id, str(recipient))
            n = seen[who] = seen.get(who, -1) + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(claim)
        returning: dict[str, datetime | None] = {
            c.message.key: c.due_at for c in claims if c.reason == PACED
        }
        going: list[_Ready] = []
        # What the gate and the pacer settle without a send, recorded together
        # at the end: a backlog brings them by the hundred.
        finals: list[Final] = []
        for round_ in rounds:
            prepared = [self._guarded(c.message, self._prepare, c, facts, finals) for c in round_]
            admitted = self._paced([p for p in prepared if p is not None], returning, finals)
            for item in admitted:
                # Counted now, before it is sent, so the cap holds within this batch;
                # a send that then fails only makes the rest of the batch more careful.
                recipient = item.message.recipient
                who = (recipient.patient_id, str(recipient))
                sent = facts.sent.setdefault(who, {})
                sent.setdefault(item.outgoing.channel, []).append(self.clock.now())
            going += admitted
        if finals:
            self.store.finish_all(finals, self.owner, self.clock.now())
        if len(rounds) > 1:
            place = {claim.message.key: index for index, claim in enumerate(claims)}
            going.sort(key=lambda item: place[item.message.key])
        return going

    def _prepare(self, claim: Claim, facts: SendingFacts, finals: list[Final]) -> _Ready | None:
        """Decide one message; record what is not a send, or add it to `finals`.

        Returns the message to render and hand to its connector, or None when
        it is settled here (suppressed or expired: in `finals`; deferred, failed).
        """
        message = claim.message
        now = self.clock.now()
        unreadable = facts.unreadable_patients.get(
            message.recipient.patient_id
        ) or facts.unreadable_journeys.get(
            (message.recipient.patient_id, message.flow_id, message.flow_version)
        )
        if unreadable is not None:
            # Sending without the patient's contacts or the journey's appointment
            # could only send a wrong message: this one fails, the batch goes on.
            self._fail(message, unreadable)
            return None
        flow = self.flows.version(message.flow_id, message.flow_version)
        patient = facts.patients.get(message.recipient.patient_id)
        contact = contact_for(patient, message.recipient) if patient else None
        who = (message.recipient.patient_id, str(message.recipient))
        consent = facts.consent.get(who, {})
        sent = facts.sent.get(who, {})
        verdict = decide(
            message, flow, SendContext(contact, consent, sent), now, stale_after=self.stale_after
        )
        if isinstance(verdict, Defer):
            self.store.reschedule(
                message, self.owner, now, verdict.until, f"deferred:{verdict.reason}"
            )
            return None
        if isinstance(verdict, Suppress):
            finals.append(Final(message, MessageStatus.SUPPRESSED, verdict.reason))
            return None
        if isinstance(verdict, Expire):
            finals.append(Final(message, MessageStatus.EXPIRED, verdict.reason))
            return None
        assert contact is not None and patient is not None
        usable, _ = contactable(message.channels, contact, consent)
        relationship = next(
            (c.relationship for c in patient.caregivers if c.id == message.recipient.caregiver_id),
            None,
        )
        journey = facts.journeys.get((who[0], message.flow_id, message.flow_version))
        channels = [verdict.channel, *(c for c in usable if c is not verdict.channel)]
        return self._ready(message, verdict, channels, contact, relationship, journey)

    def _ready(
        self,
        message: ScheduledMessage,
        verdict: Send,
        channels: Sequence[Channel],
        contact: Contact,
        relationship: str | None,
        journey: Journey | None,
        refusal: tuple[MessageStatus, str] = (MessageStatus.FAILED, "no_channel"),
    ) -> _Ready | None:
        """Render for the first channel that can carry it (`_mark_sending` marks it).

        None when no channel can: the message is failed.
        """
        for index, channel in enumerate(channels):
            connector = self.connectors.get(channel)
            to = contact.address(channel)
            if connector is None or not to:
                continue
            context = render_context(
                message,
                journey,
                channel=channel,
                language=verdict.language,
                timezone=message.timezone,
                caregiver_relationship=relationship,
                org=self.org,
            )
            try:
                rendered = self.templates_for(message.flow_id, message.flow_version).render(
                    channel, verdict.language, message.template, context
                )
            except TemplateError:
                log.error(
                    "dispatch.template_failed",
                    extra={"message_key": message.key, "channel": channel.value},
                )
                refusal = (MessageStatus.FAILED, "template_error")
                continue
            outgoing = Outgoing(
                message.key,
                channel,
                str(to),
                rendered.body,
                rendered.subject,
                rendered.html,
                valid_until=stale_at(message, self.stale_after),
            )
            return _Ready(
                message,
                verdict,
                outgoing,
                tuple(channels[index + 1 :]),
                contact,
                relationship,
                journey,
            )
        self.store.finish(message, self.owner, self.clock.now(), *refusal)
        return None

    def _paced(
        self,
        rendered: list[_Ready],
        returning: Mapping[str, datetime | None],
        finals: list[Final],
    ) -> list[_Ready]:
        """The sends that may go now (their tokens taken); the others held, or expired.

        A message in `returning` was admitted before: held for its tokens until
        the instant given (None: its hold, if any, is audited as a first). One whose turn would come too late tries its next
        usable channels, paced in turn, before it expires (added to `finals`).
        """
        if self.pacer is None:
            return rendered
        going: list[_Ready] = []
        while rendered:
            now = self.clock.now()
            keys = frozenset(item.message.key for item in rendered if item.message.key in returning)
            told = self.pacer.admit([item.outgoing for item in rendered], now, keys)
            later: list[_Ready] = []
            for item, taken in zip(rendered, told, strict=True):
                if taken.taken:
                    going.append(item)
                elif taken.ready_at is not None:
                    held = returning.get(item.message.key)
                    self._guarded(item.message, self._hold_paced, item, taken.ready_at, held)
                elif item.fallbacks:
                    # Too late on this channel: the next one may carry it in time.
                    other = self._guarded(item.message, self._next_channel, item)
                    if other is not None:
                        later.append(other)
                else:
                    # Its sender could take it only at or past its staleness limit: not sent late.
                    finals.append(Final(item.message, MessageStatus.EXPIRED, "stale"))
            rendered = later
        return going

    def _next_channel(self, item: _Ready) -> _Ready | None:
        """`item` rendered for its next usable channel; None (expired `stale`) when none can."""
        return self._ready(
            item.message,
            item.verdict,
            item.fallbacks,
            item.contact,
            item.relationship,
            item.journey,
            (MessageStatus.EXPIRED, "stale"),
        )

    def _hold_paced(self, item: _Ready, until: datetime, held: datetime | None) -> None:
        """Hold a send until its turn (`paced`); `held`: the instant it was held for before.

        Held again, it is audited only when its instant moves by more than
        `_REAUDIT_PACED`, so the audited `due_at` stays within that of the truth.
        """
        message, now = item.message, self.clock.now()
        audit = held is None or abs(until - held) > _REAUDIT_PACED
        self.store.reschedule(message, self.owner, now, until, PACED, audit=audit)
        log.info(
            "dispatch.paced",
            extra={
                "message_key": message.key,
                "channel": item.outgoing.channel.value,
                "until": until.isoformat(),
            },
        )

    def _mark_sending(self, item: _Ready) -> _Ready | None:
        """Mark one rendered message "sending" as its send starts, numbering its attempt.

        Marked one at a time, just before its own send, so that a cancellation
        or an opt-out that arrives while earlier messages of the batch are
        being sent still wins (a `sending` message can no longer be cancelled).
        None when its claim was lost (cancelled meanwhile, or another claimer
        took it over): it must not be sent.
        """
        now = self.clock.now()
        key = item.message.key
        attempts = self.store.begin_sends(
            {key: item.outgoing.channel}, self.owner, now, now + self.lease
        )
        if key not in attempts:
            return None
        return replace(item, attempt=attempts[key])

    def _deliver(
        self, rendered: Sequence[_Ready]
    ) -> tuple[list[_Ready], list[_Sent | Exception | _Lost]]:
        """Mark and hand each message to its connector; the items and their outcomes, in order.

        Each send starts only while the heartbeat says the batch is still held
        and its own mark succeeds; one that is not is `_LOST`, never sent.
        """
        # The claims were taken before the batch was decided: renew at the first send.
        lease = _Heartbeat(
            self.store,
            self.clock,
            self.owner,
            self.lease,
            {item.message.key for item in rendered},
            datetime.min.replace(tzinfo=UTC),
        )
        items = list(rendered)

        def marked(index: int) -> bool:
            if not lease.holds(items[index].message.key):
                return False
            item = self._guarded(items[index].message, self._mark_sending, items[index])
            if item is None:
                return False
            items[index] = item
            return True

        if self.concurrency <= 1 or len(items) <= 1:
            outcomes: list[_Sent | Exception | _Lost] = [
                self._send_one(items[i].outgoing) if marked(i) else _LOST for i in range(len(items))
            ]
            return items, outcomes
        started: dict[int, Future[_Sent | Exception]] = {}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="send") as pool:
            running: set[Future[_Sent | Exception]] = set()
            for index in range(len(items)):
                # One slot at a time, so the heartbeat beats between sends here too.
                while len(running) >= self.concurrency:
                    _, running = wait(running, return_when=FIRST_COMPLETED)
                if marked(index):
                    started[index] = pool.submit(self._send_one, items[index].outgoing)
                    running.add(started[index])
        return items, [started[i].result() if i in started else _LOST for i in range(len(items))]

    def _send_one(self, outgoing: Outgoing) -> _Sent | Exception:
        try:
            return _Sent(self.connectors[outgoing.channel].send(outgoing), self.clock.now())
        except Exception as exc:  # noqa: BLE001 - the outcome is recorded with the batch
            return exc

    def _settle(self, item: _Ready, outcome: _Sent | Exception) -> bool:
        """Record one send's outcome; True when the next channel should be tried."""
        message, channel = item.message, item.outgoing.channel
        if isinstance(outcome, TransientSendError):
            self._retry(message, item.attempt, outcome)
            return False
        if isinstance(outcome, AmbiguousSendError):
            # It may have gone: never resend blindly; a callback or `find` settles it.
            now = self.clock.now()
            self.store.hold(message.key, self.owner, now + self.backoff, "reconcile:unknown")
            log.warning(
                "dispatch.outcome_unknown",
                extra={"message_key": message.key, "channel": channel.value},
            )
            return False
        if isinstance(outcome, MessageStaleError):
            # As late on any other channel: expired, not failed over.
            self.store.finish(
                message,
                self.owner,
                self.clock.now(),
                MessageStatus.EXPIRED,
                "stale",
                attempt_outcome="failed",
            )
            return False
        if isinstance(outcome, PermanentSendError):
            if item.fallbacks:
                self.store.unsend(
                    message.key, self.owner, self.clock.now(), "failed", str(outcome)[:300]
                )
                return True
            self.store.finish(
                message,
                self.owner,
                self.clock.now(),
                *_refusal(outcome),
                attempt_outcome="failed",
                error=str(outcome)[:300],
            )
            return False
        if isinstance(outcome, Exception):
            raise outcome  # a connector bug: the per-message boundary records it
        self._record_sent([(item, outcome)])
        return False

    def _record_sent(self, sent: Sequence[tuple[_Ready, _Sent]]) -> None:
        """Record accepted sends as sent, together."""
        if not sent:
            return
        self.store.finish_sent(
            [
                Sent(
                    item.message,
                    outcome.at,
                    item.outgoing.channel,
                    outcome.receipt.provider_id,
                    item.verdict.language,
                    "language_fallback" if item.verdict.language_fallback else None,
                )
                for item, outcome in sent
            ],
            self.owner,
        )
        for item, _ in sent:
            message = item.message
            log.info(
                "dispatch.sent",
                extra={
                    "message_key": message.key,
                    "flow": message.flow_id,
                    "stage": message.stage_id,
                    "message_id": message.message_id,
                    "channel": item.outgoing.channel.value,
                },
            )

    def _fall_back(self, item: _Ready, error: PermanentSendError) -> None:
        """After a permanent refusal: the next usable channels, one message at a time."""
        ready: _Ready | None = item
        while ready is not None and ready.fallbacks:
            rendered = self._ready(
                item.message,
                item.verdict,
                ready.fallbacks,
                item.contact,
                item.relationship,
                item.journey,
                _refusal(error),
            )
            if rendered is None:
                return
            if self.pacer is not None:
                # Rare: it was admitted once, so it comes back ahead of new sends; held
                # (or expired) when its next channel's sender has no tokens for it.
                with self.store.together():
                    finals: list[Final] = []
                    admitted = self._paced([rendered], {item.message.key: None}, finals)
                    self.store.finish_all(finals, self.owner, self.clock.now())
                if not admitted:
                    return
                rendered = admitted[0]
            marked, outcomes = self._deliver([rendered])
            ready, outcome = marked[0], outcomes[0]
            if isinstance(outcome, _Lost) or not self._settle(ready, outcome):
                return
            error = cast(PermanentSendError, outcome)

    def _retry(self, message: ScheduledMessage, attempts: int, error: SendError) -> None:
        now = self.clock.now()
        if attempts >= self.max_attempts:
            self.store.finish(
                message,
                self.owner,
                now,
                MessageStatus.FAILED,
                f"retries_exhausted:{error.__class__.__name__}",
                attempt_outcome="failed",
                error=str(error)[:300],
            )
            return
        # Exponential backoff with "equal" jitter (half to all of the backoff): retries
        # from many workers spread out, and none comes back sooner than half the wait.
        ceiling = self.backoff * (2 ** (attempts - 1))
        delay = timedelta(seconds=self.rng.uniform(0.5, 1.0) * ceiling.total_seconds())
        if now + delay >= stale_at(message, self.stale_after):
            # The next attempt could only find it stale: say so now, not after the wait.
            self.store.finish(
                message,
                self.owner,
                now,
                MessageStatus.EXPIRED,
                "stale",
                attempt_outcome="failed",
                error=str(error)[:300],
            )
            return
        self.store.reschedule(
            message,
            self.owner,
            now,
            now + delay,
            f"retry:{error.__class__.__name__}",
            attempt_outcome="retry",
            error=str(error)[:300],
        )

    def _settled_after_crash(self, claim: Claim) -> bool:
        """For a message caught mid-send: record what the provider says happened.

        Returns True when the message is settled (it was sent, or we cannot
        tell yet and will ask again later); False when it was not sent and
        may be dispatched now.
        """
        message = claim.message
        now = self.clock.now()
        channel = Channel(claim.channel) if claim.channel else None
        connector = self.connectors.get(channel) if channel else None
        if connector is None:
            # Nobody can say whether it went: failing it is the honest record.
            self.store.finish(
                message, self.owner, now, MessageStatus.FAILED, "reconcile:no_connector"
            )
            return True
        try:
            receipt = connector.find(message.key)
        except TransientSendError:
            if now >= (message.expires_at or claim.due_at + self.reconcile_limit):
                # Nobody will tell any more (the provider never got it, or forgot
                # this process): resending now could only send a stale or a
                # second copy. Failed, with a reason that says why.
                self.store.finish(
                    message,
                    self.owner,
                    now,
                    MessageStatus.FAILED,
                    "reconcile:unresolved",
                    attempt_outcome="unknown",
                )
                log.warning(
                    "dispatch.outcome_unresolved",
                    extra={"message_key": message.key, "channel": claim.channel},
                )
                return True
            # Still "sending": ask again when this hold runs out, never resend blindly.
            self.store.hold(message.key, self.owner, now + self.backoff, "reconcile:unknown")
            return True
        if receipt is None:
            self.store.unsend(message.key, self.owner, now, "not_sent", None)
            return False
        self.store.finish(
            message,
            self.owner,
            now,
            MessageStatus.SENT,
            "reconciled",
            channel=channel,
            provider_id=receipt.provider_id,
            attempt_outcome="sent",
        )
        return True


def _refusal(error: PermanentSendError) -> tuple[MessageStatus, str]:
    """The final status and reason of a message no channel would take after `error`."""
    if isinstance(error, RecipientOptedOutError):
        return MessageStatus.SUPPRESSED, "consent:provider_opt_out"
    return MessageStatus.FAILED, f"permanent:{error.__class__.__name__}"
