"""Fuzzing the console's inputs: the sign-in form and the flow id in the path.

Whatever arrives (NUL, lone surrogates, huge or deeply nested text, bytes
that are not UTF-8), the answer is a clear 4xx (or the sign-in's redirect),
never a 5xx, and never repeats a token.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.roles import Role
from tests.orchestrator.console.conftest import TOKENS, Console, bearer

_HOSTILE = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["\x00", "\ud800", "\udfff", "é", "/", "%", "..", "{"])).map("".join),
    st.integers(1, 20).map(lambda n: "[" * (n * 50) + "]" * (n * 50)),
    st.integers(1, 4).map(lambda n: "x" * (n * 5000)),
    st.sampled_from(["knee-replacement\x00", "knee-replacement/../..", "%00", "\ud800"]),
)
_FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _path_part(text: str) -> str:
    # Lone surrogates go out as the bytes a careless client would send; dots are
    # escaped so that the client does not resolve "." and ".." away.
    return quote(text.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


@_FUZZ
@given(flow_id=_HOSTILE.filter(bool))
def test_a_hostile_flow_id_is_a_clear_4xx(console: Console, flow_id: str) -> None:
    for suffix in ("", "/diff?from=1&to=2"):
        response = console.client.get(
            f"/console/flows/{_path_part(flow_id)}{suffix}",
            headers=bearer(Role.MARKETING),
            follow_redirects=False,
        )

        # A 4xx, or the router's redirect where an escaped "/" left an empty segment.
        assert 300 <= response.status_code < 500, (flow_id[:40], response.status_code)
        if response.status_code < 400:
            assert "/" in flow_id, (flow_id[:40], response.status_code)


@_FUZZ
@given(token=_HOSTILE, extra=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=6))
def test_a_hostile_sign_in_form_is_a_clear_4xx(
    console: Console, token: str, extra: dict[str, str]
) -> None:
    body = urlencode({**extra, "token": token}, encoding="utf-8", errors="surrogatepass").encode()

    response = console.client.post(
        "/console/login",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )

    assert response.status_code in (400, 401, 413), response.status_code
    assert "set-cookie" not in response.headers


@_FUZZ
@given(body=st.binary(max_size=6000))
def test_sign_in_bytes_that_are_not_a_form_are_a_clear_4xx(console: Console, body: bytes) -> None:
    response = console.client.post(
        "/console/login",
        content=body + b"&token=" + TOKENS[Role.ADMIN].encode()[:5],
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )

    assert response.status_code in (400, 401, 413), response.status_code
    assert TOKENS[Role.ADMIN] not in response.text


@_FUZZ
@given(patient_id=_HOSTILE.filter(lambda s: bool(s.strip("/"))))
def test_a_hostile_patient_id_is_a_clear_4xx(console: Console, patient_id: str) -> None:
    headers = bearer(Role.OPERATIONS)
    page = console.client.get(
        f"/console/patients/{_path_part(patient_id)}", headers=headers, follow_redirects=False
    )
    search = console.client.get(
        "/console/patients?patient_id=" + _path_part(patient_id),
        headers=headers,
        follow_redirects=False,
    )

    # An id nobody has is a 404; one the store cannot hold is a 422; a redirect from
    # the router where an escaped "/" left an empty segment.
    assert 300 <= page.status_code < 500, (patient_id[:40], page.status_code)
    assert search.status_code in (200, 303, 422), (patient_id[:40], search.status_code)


# Six filters in one URL: each hostile one kept under 8,000 characters, so that the
# URL stays within what the test client sends at all (httpx refuses 64 KiB).
_FILTER = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["\x00", "\ud800", "\udfff", "é", "/", "%", "..", "{"])).map("".join),
    st.integers(1, 10).map(lambda n: "[" * (n * 50) + "]" * (n * 50)),
    st.integers(1, 4).map(lambda n: "x" * (n * 2000)),
    st.sampled_from(["knee-replacement\x00", "knee-replacement/../..", "%00", "\ud800"]),
)
_DAYS = st.one_of(
    st.dates().map(str),
    st.sampled_from(["99999-01-01", "0000-01-01", "2026-02-30", "9999-12-31", "-1-01-01"]),
    _FILTER,
)


@_FUZZ
@given(
    since=_DAYS,
    until=_DAYS,
    version=st.one_of(st.integers(), st.sampled_from(["1e9", "NaN", "\x00", "9" * 400])),
    persona=_FILTER,
    language=_FILTER,
    channel=_FILTER,
)
def test_hostile_audit_filters_are_a_clear_4xx(
    console: Console,
    since: str,
    until: str,
    version: int | str,
    persona: str,
    language: str,
    channel: str,
) -> None:
    query = "&".join(
        f"{name}={_path_part(str(value))}"
        for name, value in (
            ("since", since),
            ("until", until),
            ("version", version),
            ("persona", persona),
            ("language", language),
            ("channel", channel),
        )
    )
    for suffix in ("", "/worksheet.csv"):
        response = console.client.get(
            f"/console/audit/knee-replacement{suffix}?{query}", headers=bearer(Role.MARKETING)
        )

        # 200 only where every filter happens to name something real (empty takes all).
        assert response.status_code in (200, 404, 422), (query[:200], response.status_code)
