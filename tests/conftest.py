"""Fixtures shared by the whole suite."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from orchestrator.memory_store import MemoryStore
    from orchestrator.store import SqlStore
    from orchestrator.templates import TemplateSet

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No test depends on a developer's ORCHESTRATOR_* settings, or writes to their cache."""
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    yield
    # A command run in-process keeps compiled templates on disk from then on: not past its test.
    templates = sys.modules.get("orchestrator.templates")
    if templates is not None:
        templates.keep_compiled_in(None)


@pytest.fixture(autouse=True)
def _default_gc() -> Iterator[None]:
    """A command run in-process tunes the collector (`gc_tuning`): not past its test."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    if gc.get_freeze_count():
        gc.unfreeze()


@pytest.fixture
def root() -> Path:
    return ROOT


# -- stores -------------------------------------------------------------------

PG_ADMIN_URL = os.environ.get(
    "TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated; dropped afterwards.

    PostgreSQL runs on this machine and in CI: these tests do not skip.
    """
    import uuid

    from sqlalchemy import create_engine, text

    from orchestrator.store import connect, upgrade

    name = f"orch_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = connect(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# The in-memory store, named where a store URL is: `store` builds a `MemoryStore` for it.
MEMORY = "memory:"
EVERY_BACKEND = ("memory", "sqlite", "postgresql")


@pytest.hookimpl(tryfirst=True)  # before the marks are read
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.backends(...)` (on a test or a module) picks the stores `store_url` runs on.

    Without it a test runs on SQLite and PostgreSQL. A suite whose behaviour is
    the store's ports runs on every backend (`backends(*EVERY_BACKEND)`); a
    test of SQL behaviour (locks, savepoints, migrations) names the SQL ones.
    """
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "store_url" in metafunc.fixturenames:
        # As a mark, not `metafunc.parametrize`: the fixture's own params then stand aside.
        metafunc.definition.add_marker(
            pytest.mark.parametrize("store_url", marker.args, indirect=True)
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store on each backend (the PostgreSQL one is emptied after the test)."""
    from orchestrator.store import SqlStore, connect, upgrade
    from tests import store_reads

    if request.param == "memory":
        yield MEMORY
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        engine = connect(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    url = request.getfixturevalue("pg_database")
    yield url
    engine = connect(url)
    store_reads.purge(SqlStore(engine))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated, empty SQLite store."""
    from orchestrator.store import connect, upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = connect(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore | MemoryStore]:
    """A store on each backend; a SQL one's connections are closed after the test."""
    from orchestrator.memory_store import MemoryStore
    from orchestrator.store import SqlStore, connect

    if store_url == MEMORY:
        yield MemoryStore()
        return
    engine = connect(store_url)
    yield SqlStore(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def flow_templates(tmp_path_factory: pytest.TempPathFactory) -> TemplateSet:
    """Templates for every message of the builders' test flow (`make_flow()`)."""
    from tests.builders import make_flow, templates_for

    return templates_for([make_flow()], tmp_path_factory.mktemp("templates"))
