"""Console pages at scale: p50 and p95 per page with 10,000 and 100,000 episodes in PostgreSQL.

For each size, a fresh PostgreSQL database (127.0.0.1:5432, created and
dropped here, as tests/conftest.py's `pg_database`) is filled in two steps:

1. a representative slice through the real application: every sample stream
   (samples/events/*.jsonl) replicated --slice-copies times with fresh ids,
   processed by the runtime's `EventProcessor` in time order on a virtual
   clock, with the `Dispatcher` sending (sandbox) whatever falls due between
   batches: journeys, stage visits, messages, audit, events as in production;
2. bulk copies of that slice, in SQL (`INSERT ... SELECT` over
   `generate_series`), with fresh episode, patient, key and event ids, until
   the store holds the wanted number of episodes: the rows the pages read
   (`stage_visits`, `episodes`, `audit_log`, `scheduled_messages`,
   `processed_events`, `intake_requests`, and the audit's tallies: `sent_stages` copied,
   `message_tallies` multiplied, the audit trigger off meanwhile). Journeys
   are not copied: no page reads them.

Then each page is requested --requests times (after two warm-ups) from the
real app (`create_app` over a `Runtime`, in process through httpx's
TestClient, as the admin) and its p50 and p95 printed: the dashboard, the
JSON audit and timeline, and the console's pages (PAGES; extend it as the
console grows), the draft editor (DRAFT: opening it, the check htmx posts as
you type the YAML, the preview it posts as you type a template; each post a
new keystroke, so nothing is answered from a cache of the same text), plus
`measured()` itself for each flow.

    python bench/console.py [--episodes 10000 100000] [--requests 30] [--slice-copies 40]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402
from timing import percentiles  # noqa: E402  (bench/timing.py)

from orchestrator.api.app import create_app  # noqa: E402
from orchestrator.clock import VirtualClock  # noqa: E402
from orchestrator.event_schema import parse_event  # noqa: E402
from orchestrator.insight.reading import measured  # noqa: E402
from orchestrator.service.drafts import (  # noqa: E402
    next_version,
    template_names,
    version_text,
    with_version,
)
from orchestrator.service.runtime import Runtime  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from samples import load_samples, relabel  # noqa: E402  (bench/samples.py)

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FLOW = "knee-replacement"
TOKEN = "admin-token-for-the-console-bench"
# The pages timed (a patient's pages are added with a stored patient id).
PAGES = [
    "/dashboard",
    f"/dashboard/flows/{FLOW}",
    f"/audit?flow={FLOW}",
    "/console/flows",
    f"/console/flows/{FLOW}",
    "/console/audit",
    f"/console/audit/{FLOW}",
    f"/console/audit/{FLOW}?language=es&channel=sms",
]

# The draft editor's routes, on FLOW: label -> (method, path).
DRAFT = {
    "draft editor: open": ("GET", f"/console/flows/{FLOW}/draft"),
    "draft editor: check as you type": ("POST", f"/console/flows/{FLOW}/draft"),
    "draft editor: template preview": ("POST", f"/console/flows/{FLOW}/draft/template"),
}

# The copies: each table's columns, with the ids made fresh per copy `g`.
COPIES = {
    "stage_visits": {
        "episode_id": "md5(episode_id || ':' || g)",
        "patient_id": "patient_id || '~' || g",
        "event_id": "event_id || '~' || g",
    },
    "episodes": {"id": "md5(id || ':' || g)", "patient_id": "patient_id || '~' || g"},
    "audit_log": {
        "id": None,
        "episode_id": "md5(episode_id || ':' || g)",
        "patient_id": "patient_id || '~' || g",
        "key": "md5(key || ':' || g)",
        "event_id": "event_id || '~' || g",
    },
    "scheduled_messages": {
        "key": "md5(key || ':' || g)",
        "episode_id": "md5(episode_id || ':' || g)",
        "patient_id": "patient_id || '~' || g",
    },
    "processed_events": {
        "event_id": "event_id || '~' || g",
        "patient_id": "patient_id || '~' || g",
    },
    "sent_stages": {"episode_id": "md5(episode_id || ':' || g)"},
    "intake_requests": {"episode_id": "md5(episode_id || ':' || g)"},
}


def admin_url() -> str:
    import os

    return os.environ.get("TEST_PG_ADMIN_URL", ADMIN_URL)


def create_database() -> tuple[str, str]:
    name = f"orch_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, admin_url().rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def process_slice(runtime: Runtime, clock: VirtualClock, copies: int) -> None:
    """The sample streams, `copies` times, through the processor and the dispatcher."""
    samples = load_samples()
    events = sorted(
        (parse_event(relabel(d, copy)) for copy in range(copies) for d in samples),
        key=lambda e: e.occurred_at,
    )
    for start in range(0, len(events), 100):
        batch = events[start : start + 100]
        clock.move_to(batch[0].occurred_at)
        while runtime.dispatcher.tick():
            pass
        runtime.processor.process(batch)
    clock.move_to(events[-1].occurred_at + timedelta(days=30))
    while runtime.dispatcher.tick():
        pass


def copy_slice(url: str, episodes: int) -> int:
    """Copy the slice's rows until about `episodes` episodes are stored; the total."""
    engine = create_engine(url)
    with engine.begin() as c:
        have = c.execute(text("SELECT count(*) FROM episodes")).scalar_one()
        factor = max(1, round(episodes / have))
        # The copies are the slice again, day for day and persona for persona: its
        # tallies times the factor are theirs, without the trigger per audit row.
        tally = tally_trigger(c)
        c.execute(text(f'ALTER TABLE audit_log DISABLE TRIGGER "{tally}"'))
        c.execute(
            text("UPDATE message_tallies SET records = records * :f, keys = keys * :f"),
            {"f": factor},
        )
        for table, fresh in COPIES.items():
            columns = [
                r[0]
                for r in c.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_name = :t ORDER BY ordinal_position"
                    ),
                    {"t": table},
                )
            ]
            kept = [col for col in columns if fresh.get(col, "") is not None]
            values = [fresh.get(col) or f'"{col}"' for col in kept]
            names = ", ".join(f'"{col}"' for col in kept)
            c.execute(
                text(
                    f"INSERT INTO {table} ({names}) SELECT {', '.join(values)}"
                    f" FROM {table}, generate_series(1, :n) AS g"
                ),
                {"n": factor - 1},
            )
        c.execute(text(f'ALTER TABLE audit_log ENABLE TRIGGER "{tally}"'))
        total = c.execute(text("SELECT count(*) FROM episodes")).scalar_one()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return int(total)


def tally_trigger(c: Connection) -> str:
    """The audit's tally trigger, by its function's name: `tally_audit` (migration
    0011's row trigger) or `tally_audit_rows` (0015's statement trigger, 0016's body)."""
    return str(
        c.execute(
            text(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                " WHERE t.tgrelid = 'audit_log'::regclass AND NOT t.tgisinternal"
                " AND p.proname LIKE 'tally_audit%'"
            )
        ).scalar_one()
    )


def app_client(runtime: Runtime, token: str) -> TestClient:
    """The real app in process, signed in as the admin."""
    client = TestClient(create_app(runtime, run_dispatcher=False))
    client.headers["authorization"] = f"Bearer {token}"
    return client


def read_pages(client: TestClient, runtime: Runtime) -> list[tuple[str, Callable[[], object]]]:
    """The GET pages of PAGES, and one patient's timeline and console page."""
    with runtime.store.transactions.read() as c:
        patient = c.execute(text("SELECT patient_id FROM episodes LIMIT 1")).scalar_one()
    return [
        (path, lambda path=path: client.get(path).raise_for_status())
        for path in [*PAGES, f"/patients/{patient}/timeline", f"/console/patients/{patient}"]
    ]


def measured_pages(runtime: Runtime) -> list[tuple[str, Callable[[], object]]]:
    """`measured()` of every current flow, as the flow and audit pages ask it."""
    return [
        (f"measured({flow_id})", lambda flow=flow: measured(runtime.store, flow))
        for flow_id, flow in sorted(runtime.flows.current.items())
    ]


def draft_pages(client: TestClient, runtime: Runtime) -> list[tuple[str, Callable[[], object]]]:
    """The draft editor's requests, each post one keystroke more than the last."""
    flow = runtime.flows.current[FLOW]
    text = with_version(
        version_text(runtime, FLOW, flow.version) or "", next_version(runtime, FLOW)
    )
    template = next(
        n for n in template_names(flow, runtime.dispatcher.templates) if n.startswith("sms/en/")
    )
    body = runtime.dispatcher.templates.text_of(template) or ""
    typed = itertools.count()
    forms = {
        "draft editor: open": lambda: None,
        "draft editor: check as you type": lambda: {"text": f"{text}# {next(typed)}\n"},
        "draft editor: template preview": lambda: {
            "name": template,
            "text": f"{body.rstrip()} {next(typed)}\n",
        },
    }

    def request(label: str) -> None:
        method, path = DRAFT[label]
        form = forms[label]()
        client.request(method, path, data=form).raise_for_status()

    return [(label, lambda label=label: request(label)) for label in DRAFT]


def bench(
    size: int, requests: int, slice_copies: int, keep: bool = False
) -> list[tuple[str, float, float]]:
    name, url = create_database()
    try:
        start = datetime(2026, 3, 1, tzinfo=UTC)
        clock = VirtualClock(start)
        settings = Settings(
            db=url, flows=ROOT / "flows", templates=ROOT / "templates", api_token=TOKEN
        )
        runtime = Runtime.build(settings, clock=clock)
        began = time.perf_counter()
        process_slice(runtime, clock, slice_copies)
        sliced = time.perf_counter() - began
        total = copy_slice(url, size)
        print(
            f"{total:,} episodes: slice of {slice_copies} sample copies processed in "
            f"{sliced:.0f} s, copied in SQL in {time.perf_counter() - began - sliced:.0f} s",
            flush=True,
        )
        client = app_client(runtime, TOKEN)
        pages = read_pages(client, runtime) + draft_pages(client, runtime)
        pages += measured_pages(runtime)
        found = []
        for label, page in pages:
            began = time.perf_counter()
            for _ in range(2):
                page()
            # A page slower than a second per request is timed 3 times, not --requests:
            # its p95 (nearest rank) is then its worst, and the run stays within minutes.
            slow = time.perf_counter() - began > 2.0
            times = []
            for _ in range(3 if slow else requests):
                began = time.perf_counter()
                page()
                times.append(time.perf_counter() - began)
            p50, p95 = percentiles(times)
            found.append((label, p50, p95))
            print(f"  {label:<45} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms", flush=True)
        client.close()
        runtime.close()
        return found
    finally:
        if keep:
            print(f"kept: {url}")
        else:
            drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--slice-copies", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the databases (to EXPLAIN)")
    args = parser.parse_args()
    results = {
        size: bench(size, args.requests, args.slice_copies, args.keep) for size in args.episodes
    }
    print(json.dumps({str(k): v for k, v in results.items()}))


if __name__ == "__main__":
    main()
