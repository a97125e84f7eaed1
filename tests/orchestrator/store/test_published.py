"""Published flow versions and drafts in the SQL stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from orchestrator.store import SqlStore
from orchestrator.store.published import Published, VersionTaken
from tests.builders import T0, at

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def test_a_published_version_is_kept_whole_and_newest_finds_it(store: SqlStore) -> None:
    store.record_flow_version("f", 1, '{"id": "f", "version": 1}', T0)
    published = Published(store.transactions)
    published.save_draft("f", "id: f\nversion: 2\n", {"sms/en/a.j2": "hi"}, "admin:abc", T0)
    read = published.draft("f")

    published.publish(
        "f",
        2,
        '{"id": "f", "version": 2}',
        "id: f\nversion: 2\n",
        {"sms/en/a.j2": "hi"},
        "admin:abc",
        "-version: 1\n+version: 2",
        at(hours=1),
        read,
    )

    assert published.newest() == {"f": 2}
    two = published.version("f", 2)
    assert two is not None
    assert (two.published_by, two.text, dict(two.templates)) == (
        "admin:abc",
        "id: f\nversion: 2\n",
        {"sms/en/a.j2": "hi"},
    )
    assert two.published_at == at(hours=1)
    one = published.version("f", 1)
    assert one is not None and (one.published_by, one.text, dict(one.templates)) == (
        "file",
        None,
        {},
    )
    assert [v.version for v in published.history("f")] == [2, 1]
    assert published.templates() == {("f", 2): {"sms/en/a.j2": "hi"}}
    # Publishing dropped the draft it read with it.
    assert published.draft("f") is None


def test_publishing_keeps_a_draft_saved_since_it_was_read_and_one_it_did_not_read(
    store: SqlStore,
) -> None:
    published = Published(store.transactions)
    published.save_draft("f", "one", {"sms/en/a.j2": "hi"}, "admin:1", T0)
    read = published.draft("f")
    # Saved again at the same instant: only the content tells the edits apart.
    published.save_draft("f", "one", {"sms/en/a.j2": "hi there"}, "admin:2", T0)

    published.publish("f", 1, "{}", "one", {}, "admin:1", "", T0, read)
    published.publish("f", 2, "{}", "two", {}, "admin:1", "", T0)  # a rollback reads none

    kept = published.draft("f")
    assert kept is not None and dict(kept.templates) == {"sms/en/a.j2": "hi there"}


def test_two_publishers_of_one_version_get_one_row(store: SqlStore) -> None:
    published = Published(store.transactions)
    published.publish("f", 1, "{}", "a", {}, "admin:1", "", T0)

    with pytest.raises(VersionTaken):
        published.publish("f", 1, "{}", "b", {}, "admin:2", "", T0)

    found = published.version("f", 1)
    assert found is not None and found.text == "a"


def test_a_draft_is_overwritten_as_it_is_edited(store: SqlStore) -> None:
    published = Published(store.transactions)
    published.save_draft("f", "one", {}, "admin:1", T0)
    published.save_draft("f", "two", {"email/es/b.j2": "ñ"}, "admin:2", at(hours=1))

    draft = published.draft("f")
    assert draft is not None
    assert (draft.text, dict(draft.templates), draft.updated_by) == (
        "two",
        {"email/es/b.j2": "ñ"},
        "admin:2",
    )
    published.drop_draft("f")
    assert published.draft("f") is None
