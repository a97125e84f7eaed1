"""The console's drafts: edit a flow and its templates, see problems and previews as you
type, compare the draft with the running version, publish it, roll back.

Editing and publishing are the admin's (`require_role(Role.ADMIN)`); the
version history is every role's (aggregates only: who published is a role and
a token's short hash). The work itself is `service.drafts`'; this module
reads forms and renders. Forms are read with a size limit and parsed here (a
draft is at most `MAX_FLOW_TEXT`, a template `_TEMPLATE_LIMIT`): anything
larger or unreadable is a 4xx, and any text at all is a list of problems,
never an error page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..api.bodies import read_limited
from ..api.deps import runtime_of
from ..api.roles import ANY_ROLE, SESSION_COOKIE, require_role
from ..errors import FlowError, InputError
from ..event import Event
from ..event_schema import parse_event_json
from ..flows.loader import MAX_FLOW_TEXT
from ..flows.model import Flow
from ..insight.compare import KINDS, Comparison, compare
from ..preview import MessagePreview, render_all
from ..roles import Role
from ..service.drafts import (
    TEMPLATE_NAME,
    check_draft,
    draft_flow,
    next_version,
    publish,
    publisher,
    rollback,
    template_names,
    version_text,
    versioned_templates,
    with_version,
)
from ..service.runtime import Runtime
from ..simulate import as_run, simulate
from ..store.published import Draft, Published, VersionTaken
from ..templates import TemplateSet
from ..whatif import draft_vs_running
from .pages import render

__all__ = [
    "DraftForm",
    "SmallForm",
    "TemplateForm",
    "behind_banner",
    "draft_page",
    "publish_draft",
    "rollback_to",
    "router",
    "save_draft",
    "save_template",
    "versions_page",
    "what_if",
]

router = APIRouter(prefix="/console/flows/{flow_id}", include_in_schema=False)

FlowId = Annotated[str, Path(max_length=200)]
Admin = Depends(require_role(Role.ADMIN))
_TEMPLATE_LIMIT = 64 * 1024
_MAX_DAYS = 365
# Events read from one sample file: the shipped ones hold a few hundred.
_MAX_SAMPLE_EVENTS = 20_000


def _form_reader(limit: int, *names: str) -> Callable[[Request], Awaitable[dict[str, str]]]:
    """A dependency that reads a urlencoded form of at most `limit` bytes: name -> value."""

    async def read(request: Request) -> dict[str, str]:
        body = await read_limited(request, limit)
        if body is None:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the form is too large")
        try:
            fields = parse_qs(
                body.decode("utf-8"), max_num_fields=len(names) + 2, keep_blank_values=True
            )
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "the form could not be read") from None
        return {name: fields[name][0] for name in names if name in fields}

    return read


# Percent-encoding makes a form up to three times the text it carries.
DraftForm = Annotated[dict[str, str], Depends(_form_reader(3 * MAX_FLOW_TEXT + 1024, "text"))]
TemplateForm = Annotated[
    dict[str, str], Depends(_form_reader(3 * _TEMPLATE_LIMIT + 1024, "name", "text"))
]
SmallForm = Annotated[dict[str, str], Depends(_form_reader(4096, "version", "days", "sample"))]


@dataclass(frozen=True)
class _Editing:
    """What the editor works on: the running flow, the draft and its templates."""

    runtime: Runtime
    current: Flow
    draft: Draft | None
    text: str
    edited: Mapping[str, str]

    @property
    def templates(self) -> TemplateSet:
        base = versioned_templates(self.runtime, self.current.id, self.current.version)
        return base.over(self.edited)


def _editing(request: Request, flow_id: str) -> _Editing:
    runtime = runtime_of(request)
    current = runtime.flows.current.get(flow_id)
    if current is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such flow")
    draft = Published(runtime.store.transactions).draft(flow_id)
    if draft is not None:
        return _Editing(runtime, current, draft, draft.text, draft.templates)
    text = version_text(runtime, flow_id, current.version) or ""
    return _Editing(runtime, current, None, with_version(text, next_version(runtime, flow_id)), {})


def _who(request: Request, role: Role) -> str:
    header = request.headers.get("authorization", "")
    token = header.partition(" ")[2] if header else request.cookies.get(SESSION_COOKIE)
    return publisher(role, token if not request.app.state.tokens.open else None)


@router.get("/draft", response_class=HTMLResponse, dependencies=[Admin])
def draft_page(request: Request, flow_id: FlowId) -> HTMLResponse:
    editing = _editing(request, flow_id)
    checked = check_draft(editing.runtime, flow_id, editing.text, editing.templates)
    flow = checked.flow or editing.current
    templates = editing.templates
    names = template_names(flow, templates)
    return render(
        request,
        "draft.html",
        flow=editing.current,
        draft=editing.draft,
        text=editing.text,
        problems=checked.problems,
        templates=[(n, templates.text_of(n) or "", n in editing.edited) for n in names],
        samples=_samples(editing.runtime),
        banner=None,
    )


@router.post("/draft", response_class=HTMLResponse)
def save_draft(
    request: Request, flow_id: FlowId, form: DraftForm, role: Role = Admin
) -> HTMLResponse:
    """Keep the text as the draft; answer its problems (htmx swaps them in as you type)."""
    text = form.get("text", "")
    if len(text) > MAX_FLOW_TEXT:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the flow is too long")
    editing = _editing(request, flow_id)
    runtime = editing.runtime
    Published(runtime.store.transactions).save_draft(
        flow_id, text, editing.edited, _who(request, role), runtime.clock.now()
    )
    checked = check_draft(runtime, flow_id, text, editing.templates)
    return render(request, "_problems.html", problems=checked.problems)


@router.post("/draft/template", response_class=HTMLResponse)
def save_template(
    request: Request, flow_id: FlowId, form: TemplateForm, role: Role = Admin
) -> HTMLResponse:
    """Keep a template's text in the draft; answer its preview for every message using it."""
    name, text = form.get("name", ""), form.get("text", "")
    if not TEMPLATE_NAME.match(name):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "not a template name")
    if len(text) > _TEMPLATE_LIMIT:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the template is too long")
    editing = _editing(request, flow_id)
    runtime = editing.runtime
    edited = {**editing.edited, name: text}
    Published(runtime.store.transactions).save_draft(
        flow_id, editing.text, edited, _who(request, role), runtime.clock.now()
    )
    templates = editing.templates.over({name: text})
    # The draft's messages as written; whether its templates pass is the check's question.
    flow = draft_flow(flow_id, editing.text) or editing.current
    return render(request, "_preview.html", previews=_previews(runtime, flow, templates, name))


def _previews(
    runtime: Runtime, flow: Flow, templates: TemplateSet, name: str
) -> list[MessagePreview]:
    channel, language, _ = name.split("/", 2)
    if language not in flow.languages:
        return []
    found = render_all(flow, templates, runtime.dispatcher.org, language=language)
    return [
        m
        for m in found.messages
        if templates.name_of(m.channel, m.language, m.template) == name
        and m.channel.value == channel
    ]


@router.post("/draft/whatif", response_class=HTMLResponse)
def what_if(request: Request, flow_id: FlowId, form: SmallForm, role: Role = Admin) -> HTMLResponse:
    """The draft against the running version, on a sample file or the last N days."""
    editing = _editing(request, flow_id)
    runtime = editing.runtime
    checked = check_draft(runtime, flow_id, editing.text, editing.templates)
    if checked.flow is None:
        return render(request, "_problems.html", problems=checked.problems, status_code=422)
    running = dict(runtime.flows.current)
    drafted = {**running, flow_id: checked.flow}
    settings = runtime.settings
    sample = form.get("sample")
    if sample:
        events = _sample_events(runtime, sample)
        comparison = compare(
            simulate(
                events,
                running,
                versioned_templates(runtime, flow_id, editing.current.version),
                **as_run(settings),
            ),
            simulate(events, drafted, editing.templates, **as_run(settings)),
        )
        over = f"the sample {sample}"
    else:
        days = _int(form.get("days", ""), 1, _MAX_DAYS)
        comparison = draft_vs_running(
            runtime.store,
            running,
            {flow_id: checked.flow},
            editing.templates,
            days,
            clock=runtime.clock,
            **as_run(settings),
        )
        over = f"the last {days} days of history"
    return render(request, "_whatif.html", comparison=_shown(comparison), over=over, kinds=KINDS)


def _shown(comparison: Comparison) -> dict[str, object]:
    # Counts per stage only: a change names a patient, and this page is no timeline.
    data = comparison.as_json()
    return {"summary": data["summary"], "unchanged": data["unchanged"], "stages": data["stages"]}


def _samples(runtime: Runtime) -> list[str]:
    folder = _samples_dir(runtime)
    return sorted(p.name for p in folder.glob("*.jsonl")) if folder.is_dir() else []


def _samples_dir(runtime: Runtime) -> FilePath:
    return runtime.settings.samples


def _sample_events(runtime: Runtime, name: str) -> list[Event]:
    if name not in _samples(runtime):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such sample")
    events: list[Event] = []
    with (_samples_dir(runtime) / name).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number >= _MAX_SAMPLE_EVENTS:
                break
            if line.strip():
                try:
                    events.append(
                        parse_event_json(line, default_region=runtime.settings.default_region)
                    )
                except InputError:
                    continue
    return events


def _int(given: str, low: int, high: int) -> int:
    if not given.strip().isdigit() or not low <= int(given) <= high:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"give a whole number from {low} to {high}"
        )
    return int(given)


@router.post("/draft/publish", response_class=HTMLResponse)
def publish_draft(request: Request, flow_id: FlowId, role: Role = Admin) -> Response:
    """Publish the draft as the flow's next version; to the version history."""
    editing = _editing(request, flow_id)
    if editing.draft is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "there is no draft to publish")
    return _published(
        request,
        flow_id,
        lambda: publish(
            editing.runtime,
            flow_id,
            editing.text,
            editing.templates,
            _who(request, role),
            editing.draft,
        ),
    )


@router.post("/rollback", response_class=HTMLResponse)
def rollback_to(request: Request, flow_id: FlowId, form: SmallForm, role: Role = Admin) -> Response:
    """Publish an older version's YAML and templates again, as a new version."""
    runtime = runtime_of(request)
    if flow_id not in runtime.flows.current:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such flow")
    version = _int(form.get("version", ""), 1, 1_000_000)
    try:
        return _published(
            request, flow_id, lambda: rollback(runtime, flow_id, version, _who(request, role))
        )
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such version of this flow") from None


def _published(request: Request, flow_id: str, publishing: Callable[[], object]) -> Response:
    """Publish (a draft, or an older version again); answer with the versions page or why not."""
    try:
        publishing()
    except FlowError as exc:
        return render(request, "_problems.html", problems=exc.problems, status_code=422)
    except VersionTaken:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "another version was published first"
        ) from None
    return RedirectResponse(f"/console/flows/{flow_id}/versions", status.HTTP_303_SEE_OTHER)


@router.get(
    "/versions", response_class=HTMLResponse, dependencies=[Depends(require_role(*ANY_ROLE))]
)
def versions_page(request: Request, flow_id: FlowId) -> HTMLResponse:
    runtime = runtime_of(request)
    current = runtime.flows.current.get(flow_id)
    if current is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such flow")
    history = Published(runtime.store.transactions).history(flow_id)
    behind = runtime.flows.behind(flow_id)
    return render(
        request,
        "versions.html",
        flow=current,
        history=history,
        banner=behind_banner(flow_id, behind),
    )


def behind_banner(flow_id: str, behind: str | None) -> str | None:
    """The banner of a flow whose file is older than the version published in the console."""
    if behind is None:
        return None
    return (
        f"Published in the console; {behind} is older — export it with "
        f"`orchestrator flows export {flow_id}`"
    )
