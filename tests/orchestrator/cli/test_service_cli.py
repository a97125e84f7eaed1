"""`orchestrator db upgrade | run | outbox | audit report | ingest`, and each as the console script."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from orchestrator.api import create_app
from orchestrator.cli import app
from orchestrator.clock import VirtualClock
from orchestrator.decisions import DecisionRecord
from orchestrator.event_schema import parse_event
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.store import connect, head, pending
from orchestrator.store.tables import ImportRow, ProcessedEventRow
from tests.live import serve
from tests.samples import ROOT, SAMPLES, sample_events

# FORCE_COLOR from a developer's shell would put escape codes into the output.
runner = CliRunner(env={"FORCE_COLOR": None})
SCRIPT = Path(sys.executable).parent / "orchestrator"
START = datetime(2026, 3, 1, tzinfo=UTC)
REPORT_FIELDS = ["flow", "flow_version", "stage", "message", "status", "reason", "count"]


def settings(url: str) -> Settings:
    return Settings(db=url, flows=ROOT / "flows", templates=ROOT / "templates")


def console_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- db upgrade ------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"

    result = runner.invoke(app, ["db", "upgrade", "--db", url])

    assert result.exit_code == 0, result.output
    assert f"store at migration {head()}" in result.stdout
    engine = connect(url)
    try:
        assert pending(engine) is False
    finally:
        engine.dispose()


def test_db_upgrade_twice_leaves_the_schema_as_it_is(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    runner.invoke(app, ["db", "upgrade", "--db", url])

    result = runner.invoke(app, ["db", "upgrade", "--db", url])

    assert result.exit_code == 0, result.output
    assert f"store at migration {head()}" in result.stdout


def test_db_upgrade_names_a_store_it_cannot_open(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--db", "nosuchdialect://user:secret@host/db"])

    assert result.exit_code == 1
    assert "store: cannot open store nosuchdialect://user:***@host/db" in result.stderr
    assert "secret" not in result.output


def test_db_upgrade_runs_as_the_console_script(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"

    done = console_script("db", "upgrade", "--db", url, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert f"store at migration {head()}" in done.stdout
    engine = connect(url)
    try:
        assert pending(engine) is False
    finally:
        engine.dispose()


# -- run ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "orchestrator.example.org"])
def test_run_refuses_to_bind_beyond_loopback_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["run", "--host", host])

    assert result.exit_code == 2
    assert (
        f"refusing to bind {host}: set ORCHESTRATOR_API_TOKEN "
        "(or ORCHESTRATOR_API_TOKENS) to serve beyond loopback" in result.stderr
    )
    assert list(tmp_path.iterdir()) == [], "the refusal came after the store was opened"


def test_run_refuses_beyond_loopback_as_the_console_script(tmp_path: Path) -> None:
    done = console_script("run", "--host", "0.0.0.0", cwd=tmp_path)

    assert done.returncode == 2
    assert "refusing to bind 0.0.0.0: set ORCHESTRATOR_API_TOKEN" in done.stderr
    assert list(tmp_path.iterdir()) == []


# -- outbox and audit report over a filled store ------------------------------------------------


@dataclass(frozen=True)
class Filled:
    url: str
    sent: dict[str, datetime]
    audit: list[DecisionRecord]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """Two sample streams processed and a month of them dispatched, on a virtual clock.

    Shared by the module: the commands that read it change nothing.
    """
    url = f"sqlite:///{tmp_path_factory.mktemp('filled') / 'filled.db'}"
    clock = VirtualClock(START)
    with pytest.MonkeyPatch.context() as environment:
        # Module fixtures come before the suite's autouse clean environment.
        for name in [n for n in os.environ if n.startswith("ORCHESTRATOR_")]:
            environment.delenv(name)
        service = EmbeddedService.build(settings(url), clock=clock)
    try:
        for name in ("cardiology-consult", "imaging-referral"):
            service.processor.process([parse_event(e) for e in sample_events(name)])
        while clock.now() < START + timedelta(days=30):
            clock.advance(timedelta(hours=1))
            while service.dispatcher.tick():
                pass
        messages = service.store.messages()
        audit = service.store.audit()
    finally:
        service.store.engine.dispose()
    sent = {m.key: m.sent_at for m in messages if m.status == "sent"}
    assert len(sent) > 10
    return Filled(url, sent, audit)


def test_outbox_json_lists_the_newest_sent_messages_first(filled: Filled) -> None:
    result = runner.invoke(app, ["outbox", "--db", filled.url, "--json", "--limit", "5"])

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5
    assert all(
        set(line) == {"key", "channel", "to", "subject", "body", "sent_at"} for line in lines
    )
    assert {line["key"] for line in lines} <= set(filled.sent)
    times = [datetime.fromisoformat(line["sent_at"]) for line in lines]
    assert times == sorted(times, reverse=True)
    assert times[0] == max(filled.sent.values())


def test_outbox_json_lists_every_sent_message_once(filled: Filled) -> None:
    result = runner.invoke(app, ["outbox", "--db", filled.url, "--json", "--limit", "1000"])

    assert result.exit_code == 0, result.output
    keys = [json.loads(line)["key"] for line in result.stdout.splitlines()]
    assert sorted(keys) == sorted(filled.sent)


def test_outbox_table_shows_the_newest_messages(filled: Filled) -> None:
    result = runner.invoke(app, ["outbox", "--db", filled.url, "--limit", "3"])

    assert result.exit_code == 0, result.output
    assert "sandbox outbox (3 newest)" in result.stdout
    newest = max(filled.sent, key=lambda key: filled.sent[key])
    assert newest[:12] in result.stdout


def test_outbox_on_a_store_without_schema_says_to_upgrade(tmp_path: Path) -> None:
    result = runner.invoke(app, ["outbox", "--db", f"sqlite:///{tmp_path / 'empty.db'}"])

    assert result.exit_code == 1
    assert "run `orchestrator db upgrade`" in result.stderr


def test_outbox_runs_as_the_console_script(filled: Filled, tmp_path: Path) -> None:
    done = console_script("outbox", "--db", filled.url, "--json", "--limit", "1000", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(line)["key"] for line in done.stdout.splitlines()) == sorted(
        filled.sent
    )


def expected_report(audit: list[DecisionRecord]) -> Counter[tuple[str, str, str, str, str]]:
    return Counter((a.flow, a.stage, a.message, a.status, a.reason or "") for a in audit)


def report_counts(lines: list[dict[str, Any]]) -> Counter[tuple[str, str, str, str, str]]:
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    for line in lines:
        key = (line["flow"], line["stage"], line["message"], line["status"], line["reason"])
        counts[key] += int(line["count"])
    return counts


def test_audit_report_json_counts_decisions_per_flow_stage_message_and_status(
    filled: Filled,
) -> None:
    result = runner.invoke(app, ["audit", "report", "--db", filled.url, "--format", "json"])

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(list(line) == REPORT_FIELDS for line in lines)
    assert report_counts(lines) == expected_report(filled.audit)
    assert {"scheduled", "sent"} <= {line["status"] for line in lines}


def test_audit_report_csv_holds_the_same_rows_as_json(filled: Filled) -> None:
    as_json = runner.invoke(app, ["audit", "report", "--db", filled.url, "--format", "json"])
    as_csv = runner.invoke(app, ["audit", "report", "--db", filled.url, "--format", "csv"])

    assert as_csv.exit_code == 0, as_csv.output
    reader = csv.DictReader(io.StringIO(as_csv.stdout))
    assert reader.fieldnames == REPORT_FIELDS
    rows = list(reader)
    assert rows == [
        {k: str(v) for k, v in json.loads(line).items()} for line in as_json.stdout.splitlines()
    ]


def test_audit_report_table_is_the_default(filled: Filled) -> None:
    result = runner.invoke(app, ["audit", "report", "--db", filled.url])

    assert result.exit_code == 0, result.output
    assert f"audit: {len(filled.audit)} decisions" in result.stdout
    assert "cardiology-consult" in result.stdout and "imaging-referral" in result.stdout


def test_audit_report_filters_by_flow(filled: Filled) -> None:
    result = runner.invoke(
        app,
        ["audit", "report", "--db", filled.url, "--flow", "imaging-referral", "--format", "json"],
    )

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert report_counts(lines) == expected_report(
        [a for a in filled.audit if a.flow == "imaging-referral"]
    )


def test_audit_report_since_keeps_later_decisions(filled: Filled) -> None:
    since = START + timedelta(days=15)

    result = runner.invoke(
        app,
        ["audit", "report", "--db", filled.url, "--since", since.isoformat(), "--format", "json"],
    )

    assert result.exit_code == 0, result.output
    later = [a for a in filled.audit if a.at >= since]
    assert 0 < len(later) < len(filled.audit)
    assert report_counts([json.loads(line) for line in result.stdout.splitlines()]) == (
        expected_report(later)
    )


def test_audit_report_since_without_offset_exits_2(filled: Filled) -> None:
    result = runner.invoke(
        app, ["audit", "report", "--db", filled.url, "--since", "2026-03-01T00:00:00"]
    )

    assert result.exit_code == 2
    assert "--since needs a UTC offset" in result.stderr
    assert result.stdout == ""


def test_audit_report_since_that_is_no_time_exits_2(filled: Filled) -> None:
    result = runner.invoke(app, ["audit", "report", "--db", filled.url, "--since", "last week"])

    assert result.exit_code == 2
    assert "expected an ISO 8601 time" in result.stderr


def test_audit_report_runs_as_the_console_script(filled: Filled, tmp_path: Path) -> None:
    done = console_script("audit", "report", "--db", filled.url, "--format", "json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert report_counts(lines) == expected_report(filled.audit)


# -- ingest against a live server -------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    url: str
    service: EmbeddedService

    def processed(self) -> dict[str, datetime]:
        """Stored processed events: id -> occurred_at."""
        with self.service.store.engine.connect() as c:
            rows = c.execute(select(ProcessedEventRow.event_id, ProcessedEventRow.occurred_at))
            return {event_id: occurred_at for event_id, occurred_at in rows}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """The app under uvicorn on a free loopback port, without its dispatcher."""
    service = EmbeddedService.build(settings(f"sqlite:///{tmp_path / 'live.db'}"))
    try:
        with serve(create_app(service, run_dispatcher=False)) as url:
            yield Live(url, service)
    finally:
        service.store.engine.dispose()


CARDIOLOGY = SAMPLES / "cardiology-consult.jsonl"


def test_ingest_reports_accepted_and_duplicate_counts(live: Live) -> None:
    first = runner.invoke(app, ["ingest", str(CARDIOLOGY), "--url", live.url, "--batch", "5"])
    again = runner.invoke(app, ["ingest", str(CARDIOLOGY), "--url", live.url])

    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "21 accepted, 1 duplicate"
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "22 duplicate"
    assert set(live.processed()) == {e["id"] for e in sample_events("cardiology-consult")}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_ingest_names_the_file_and_line_of_a_rejected_event(live: Live, tmp_path: Path) -> None:
    events = sample_events("cardiology-consult")[:3]
    events[1]["type"] = "appointment.teleported"
    file = write_lines(tmp_path / "events.jsonl", [json.dumps(e) for e in events])

    result = runner.invoke(app, ["ingest", str(file), "--url", live.url])

    assert result.exit_code == 1
    assert f"{file}:2: type: unknown event type" in result.stderr
    assert result.stdout.strip() == "2 accepted, 1 rejected"
    assert "+1555" not in result.output


def test_ingest_sums_up_a_duplicate_and_a_malformed_line_in_one_line_without_a_progress_bar(
    live: Live, tmp_path: Path
) -> None:
    events = [json.dumps(e) for e in sample_events("cardiology-consult")[:2]]
    file = write_lines(tmp_path / "events.jsonl", [events[0], events[1], events[0], "{not json"])

    result = runner.invoke(
        app, ["ingest", str(file), "--url", live.url], env={"TTY_COMPATIBLE": None}
    )

    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["2 accepted, 1 duplicate, 1 rejected"]
    # Not a terminal: no progress bar, no colour, nothing but text.
    assert "\x1b" not in result.output


def test_ingest_draws_its_progress_bar_on_a_terminal_only(live: Live) -> None:
    on_terminal = runner.invoke(
        app, ["ingest", str(CARDIOLOGY), "--url", live.url], env={"TTY_COMPATIBLE": "1"}
    )

    assert on_terminal.exit_code == 0, on_terminal.output
    assert "ingesting" in on_terminal.stderr and "\x1b[" in on_terminal.stderr
    assert "21 accepted" in on_terminal.stdout


def test_ingest_names_the_file_and_line_of_a_line_that_is_not_json(
    live: Live, tmp_path: Path
) -> None:
    events = [json.dumps(e) for e in sample_events("cardiology-consult")[:3]]
    # The bad line is the file's line 4 (after a blank line 2).
    file = write_lines(
        tmp_path / "events.jsonl", [events[0], "", events[1], "{not json", events[2]]
    )

    result = runner.invoke(app, ["ingest", str(file), "--url", live.url])

    assert result.exit_code == 1
    [report] = [line for line in result.stderr.splitlines() if line.startswith(f"{file}:")]
    assert report.startswith(f"{file}:4: ") and "not JSON" in report, report


def test_ingest_still_sends_the_good_lines_of_a_file_with_a_line_that_is_not_json(
    live: Live, tmp_path: Path
) -> None:
    events = sample_events("cardiology-consult")[:3]
    lines = [json.dumps(events[0]), "{not json", json.dumps(events[1]), json.dumps(events[2])]
    file = write_lines(tmp_path / "events.jsonl", lines)

    result = runner.invoke(app, ["ingest", str(file), "--url", live.url])

    assert result.exit_code == 1
    assert set(live.processed()) == {e["id"] for e in events}


def test_ingest_shift_to_now_moves_the_latest_event_to_now_and_keeps_the_gaps(live: Live) -> None:
    before = datetime.now(UTC)

    result = runner.invoke(app, ["ingest", str(CARDIOLOGY), "--url", live.url, "--shift-to-now"])

    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    stored = live.processed()
    original = {
        e["id"]: datetime.fromisoformat(e["occurred_at"])
        for e in sample_events("cardiology-consult")
    }
    latest = max(original, key=original.__getitem__)
    assert before - timedelta(seconds=1) <= stored[latest] <= after
    shift = stored[latest] - original[latest]
    assert {key: stored[key] - shift for key in stored} == original
    assert all(stored[key] <= after for key in stored)  # nothing dated in the future


def test_ingest_runs_as_the_console_script(live: Live, tmp_path: Path) -> None:
    done = console_script("ingest", str(CARDIOLOGY), "--url", live.url, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "21 accepted, 1 duplicate"


# -- ingest --history ------------------------------------------------------------------------

HISTORY_NOW = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)  # 13:00 in Chicago


@pytest.fixture
def racing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """A live service on a virtual clock whose dispatcher runs after every batch it takes."""
    service = EmbeddedService.build(
        settings(f"sqlite:///{tmp_path / 'live.db'}"), clock=VirtualClock(HISTORY_NOW)
    )
    process = service.processor.process

    def then_dispatch(*args: Any, **kwargs: Any) -> Any:
        results = process(*args, **kwargs)
        while service.dispatcher.tick():
            pass
        return results

    monkeypatch.setattr(service.processor, "process", then_dispatch)
    try:
        with serve(create_app(service, run_dispatcher=False)) as url:
            yield Live(url, service)
    finally:
        service.store.engine.dispose()


def booked_then_cancelled(path: Path) -> Path:
    """A booking an hour ago, and its cancellation half an hour later: two lines."""
    events = sample_events("cardiology-consult")
    booking = next(e for e in events if e["id"] == "evt-cc-0002")
    booking |= {"occurred_at": (HISTORY_NOW - timedelta(hours=1)).isoformat()}
    booking["appointment"] |= {"start": (HISTORY_NOW + timedelta(days=3)).isoformat()}
    cancel = json.loads(json.dumps(booking)) | {
        "id": "evt-cc-0002-cancel",
        "type": "appointment.cancelled",
        "occurred_at": (HISTORY_NOW - timedelta(minutes=30)).isoformat(),
    }
    return write_lines(path, [json.dumps(booking), json.dumps(cancel)])


def confirmations(live: Live) -> list[dict[str, Any]]:
    return [
        m
        for m in live.service.store.messages(patient_id="p-cc-001")
        if m.message == "booking_confirmation"
    ]


def test_ingest_without_history_races_the_dispatcher(racing: Live, tmp_path: Path) -> None:
    file = booked_then_cancelled(tmp_path / "history.jsonl")

    result = runner.invoke(app, ["ingest", str(file), "--url", racing.url, "--batch", "1"])

    assert result.exit_code == 0, result.output
    assert [m.status for m in confirmations(racing)] == ["sent"]


def test_ingest_history_decides_the_whole_file_before_anything_in_it_is_sent(
    racing: Live, tmp_path: Path
) -> None:
    file = booked_then_cancelled(tmp_path / "history.jsonl")

    result = runner.invoke(
        app, ["ingest", str(file), "--url", racing.url, "--batch", "1", "--history"]
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "2 accepted"
    assert [(m.status, m.reason) for m in confirmations(racing)] == [
        ("cancelled", "appointment_cancelled")
    ]
    assert racing.service.store.outbox() == []


def test_ingest_history_closes_its_import_even_when_a_line_is_rejected(
    racing: Live, tmp_path: Path
) -> None:
    file = booked_then_cancelled(tmp_path / "history.jsonl")
    file.write_text(file.read_text() + "{not json\n")

    result = runner.invoke(app, ["ingest", str(file), "--url", racing.url, "--history"])

    assert result.exit_code == 1
    with racing.service.store.engine.connect() as c:
        imports = c.execute(select(ImportRow.closed_at)).scalars().all()
    assert len(imports) == 1 and imports[0] is not None


def test_ingest_history_to_a_broker_is_refused_naming_what_to_do_instead(tmp_path: Path) -> None:
    file = booked_then_cancelled(tmp_path / "history.jsonl")

    result = runner.invoke(
        app, ["ingest", str(file), "--broker", "kafka://127.0.0.1:9", "--history"]
    )

    assert result.exit_code == 2
    assert "--history needs --url" in result.stderr
