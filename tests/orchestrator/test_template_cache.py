"""Compiled template code kept on disk: a later process renders the same, and trusts only
a directory of its own user's."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import templates as templates_module
from orchestrator.errors import TemplateError
from orchestrator.event import Channel
from orchestrator.settings import Settings
from orchestrator.template_cache import DiskCode, UnsafeCacheDirError, default_directory
from orchestrator.templates import TemplateSet, keep_compiled_in

ROOT = Path(__file__).resolve().parents[2]
EMAIL = (
    "{% block subject %}Hi {{ x }}{% endblock %}{% block text %}{{ x }} text{% endblock %}"
    "{% block html %}<p>{{ x }}</p>{% endblock %}"
)
TEXTS = {
    "sms/en/a.j2": "Hello {{ x }}{% for i in range(3) %}.{% endfor %}",
    "email/en/b.j2": EMAIL,
}


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    """The names of the templates compiled from here on (with the memory tier emptied)."""
    compiled: list[str | None] = []
    original = templates_module._BoundedEnvironment.compile

    def counting(self: object, source: object, name: str | None = None, *args: object) -> object:
        compiled.append(name)
        return original(self, source, name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(templates_module._BoundedEnvironment, "compile", counting)
    templates_module._COMPILED.clear()
    yield compiled
    templates_module._COMPILED.clear()
    keep_compiled_in(None)


def _renders(root: Path) -> list[object]:
    templates = TemplateSet(root, TEXTS)
    return [
        templates.render(Channel.SMS, "en", "a", {"x": "<b>"}),
        templates.render(Channel.EMAIL, "en", "b", {"x": "<b>"}),
    ]


def test_a_later_process_renders_from_the_disk_what_it_would_have_compiled(
    tmp_path: Path, compiles: list[str | None]
) -> None:
    keep_compiled_in(tmp_path / "cache")
    first = _renders(tmp_path)
    assert len(compiles) == 3  # the SMS, and the email plain and escaped
    templates_module._COMPILED.clear()  # as a new process starts

    again = _renders(tmp_path)

    assert len(compiles) == 3  # none compiled again
    assert again == first
    assert first[1].html == "<p>&lt;b&gt;</p>"  # type: ignore[attr-defined]
    assert first[1].body == "<b> text"  # type: ignore[attr-defined]


def test_a_hostile_template_read_from_the_disk_is_bounded_as_when_compiled(
    tmp_path: Path, compiles: list[str | None]
) -> None:
    # The loops' counting is compiled in (`_parse`): code from the disk must carry it.
    nested = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    keep_compiled_in(tmp_path / "cache")
    for _ in range(2):
        templates_module._COMPILED.clear()
        with pytest.raises(TemplateError, match="too expensive: more than 10,000 steps"):
            TemplateSet(tmp_path, {"sms/en/n.j2": nested}).render(Channel.SMS, "en", "n", {})

    assert compiles == ["sms/en/n.j2"]  # the second came from the disk


def test_the_key_changes_with_the_code_that_rewrites_templates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment = templates_module._BoundedEnvironment()
    before = templates_module._COMPILED.get_bucket(environment, "n", "f", "s").key
    edited = tmp_path / "templates.py"
    edited.write_bytes(Path(templates_module.__file__).read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(templates_module, "__file__", str(edited))
    templates_module._code_version.cache_clear()
    try:
        after = templates_module._COMPILED.get_bucket(environment, "n", "f", "s").key
    finally:
        monkeypatch.undo()
        templates_module._code_version.cache_clear()

    assert after != before


def test_escaping_is_part_of_the_key_so_plain_code_never_serves_the_html(
    tmp_path: Path, compiles: list[str | None]
) -> None:
    keep_compiled_in(tmp_path / "cache")
    templates = TemplateSet(tmp_path, TEXTS)
    templates._plain.get_template("email/en/b.j2")  # only the plain code is on disk
    templates_module._COMPILED.clear()

    rendered = TemplateSet(tmp_path, TEXTS).render(Channel.EMAIL, "en", "b", {"x": "<b>"})

    assert rendered.html == "<p>&lt;b&gt;</p>"
    assert compiles == ["email/en/b.j2", "email/en/b.j2"]  # the escaped one was a miss


def test_the_key_is_the_same_in_every_process() -> None:
    # The environment's options once went into the key by repr, a function's with its address.
    probe = (
        "from orchestrator.templates import TemplateSet, _COMPILED; from pathlib import Path; "
        "t = TemplateSet(Path('templates'));"
        "print(_COMPILED.get_bucket(t._html, 'n', 'f', 's').key)"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2)
    }

    assert len(keys) == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-5] + bytes(5),  # a flipped tail
        lambda data: b"garbage",
        lambda data: b"",
    ],
    ids=["truncated", "flipped", "garbage", "empty"],
)
def test_a_damaged_file_is_a_miss_and_compiles_again(
    tmp_path: Path, compiles: list[str | None], damage: object
) -> None:
    cache = tmp_path / "cache"
    keep_compiled_in(cache)
    first = _renders(tmp_path)
    for path in cache.iterdir():
        path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    templates_module._COMPILED.clear()

    assert _renders(tmp_path) == first
    assert len(compiles) == 6


def test_another_keys_file_under_a_keys_name_is_a_miss(tmp_path: Path) -> None:
    disk = DiskCode(tmp_path / "cache")
    disk.store("a" * 64, compile("1", "one", "eval"))
    disk.store("b" * 64, compile("2", "two", "eval"))
    os.replace(disk._path("a" * 64), disk._path("b" * 64))

    assert disk.load("b" * 64) is None
    assert disk.load("a" * 64) is None


def test_a_changed_byte_that_still_unmarshals_is_a_miss(tmp_path: Path) -> None:
    disk = DiskCode(tmp_path / "cache")
    disk.store("d" * 64, compile("'hello'", "one", "eval"))
    path = disk._path("d" * 64)
    path.write_bytes(path.read_bytes().replace(b"hello", b"jello"))

    assert disk.load("d" * 64) is None


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o770)

    for directory in (shared, group):
        with pytest.raises(UnsafeCacheDirError, match="writable by group or others"):
            DiskCode(directory)


def test_a_symlink_or_a_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "file").write_text("x")

    for name in ("link", "file"):
        with pytest.raises(UnsafeCacheDirError, match="not a directory"):
            DiskCode(tmp_path / name)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory away takes root")
def test_a_directory_or_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(UnsafeCacheDirError, match="owned by another user"):
        DiskCode(theirs)

    disk = DiskCode(tmp_path / "mine")
    disk.store("c" * 64, compile("1", "one", "eval"))
    os.chown(disk._path("c" * 64), 65534, 65534)
    assert disk.load("c" * 64) is None


def test_a_missing_directory_is_made_for_this_user_alone(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    DiskCode(directory)

    assert directory.stat().st_mode & 0o777 == 0o700


def test_validate_warns_of_an_unsafe_directory_and_still_validates(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli import main; main()", "flows", "validate"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "ORCHESTRATOR_TEMPLATE_CACHE": str(shared)},
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert f"template cache {shared} not used: writable by group or others" in done.stderr
    assert list(shared.iterdir()) == []


def _write_and_read(directory: str, rounds: int) -> list[str]:
    """In a process of its own: store the same keys' code again and again, reading them back."""
    disk = DiskCode(Path(directory))
    codes = {f"{i:064x}": compile(f"{i} * 2", f"t{i}", "eval") for i in range(8)}
    wrong = []
    for _ in range(rounds):
        for key, code in codes.items():
            disk.store(key, code)
            found = disk.load(key)
            if found is None or eval(found) != eval(code):
                wrong.append(key)
    return wrong


def test_concurrent_writers_never_leave_half_a_file(tmp_path: Path) -> None:
    directory = str(tmp_path / "cache")
    DiskCode(Path(directory))
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.starmap(_write_and_read, [(directory, 50)] * 4)

    assert results == [[], [], [], []]
    assert sorted(p.name for p in Path(directory).iterdir()) == [
        f"{i:064x}.code" for i in range(8)
    ]  # no temporary file left


def test_the_directory_is_bounded_and_keeps_what_was_used_last(tmp_path: Path) -> None:
    disk = DiskCode(tmp_path / "cache", max_bytes=20_000)
    code = compile("x = [" + "1, " * 300 + "]", "big", "exec")
    for i in range(40):
        disk.store(f"{i:064x}", code)
        os.utime(disk._path(f"{i:064x}"), (i, i))  # one a second, in order, long ago
        if i == 5:
            assert disk.load(f"{0:064x}") is not None  # used now: the newest

    sizes = sum(p.stat().st_size for p in (tmp_path / "cache").iterdir())
    assert sizes <= 20_000
    assert disk.load(f"{39:064x}") is not None
    assert disk.load(f"{0:064x}") is not None
    assert disk.load(f"{1:064x}") is None


def test_the_setting_names_the_directory_or_turns_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    assert Settings().template_cache_dir() == tmp_path / "orchestrator" / "templates"
    assert default_directory() == tmp_path / "orchestrator" / "templates"
    assert Settings(template_cache="off").template_cache_dir() is None
    assert Settings(template_cache=" OFF ").template_cache_dir() is None
    assert Settings(template_cache=str(tmp_path / "x")).template_cache_dir() == tmp_path / "x"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # not absolute: ignored, as the spec says
    assert default_directory() == Path.home() / ".cache" / "orchestrator" / "templates"


_EVERY_PREVIEW = """
import json, sys
from pathlib import Path
from orchestrator.flows.loader import load_flows
from orchestrator.preview import render_all
from orchestrator.runtime.rendering import Organisation
from orchestrator.settings import Settings
from orchestrator.templates import TemplateSet, keep_compiled_in, _COMPILED
settings = Settings()
keep_compiled_in(Path(sys.argv[1]))
templates = TemplateSet(settings.templates)
org = Organisation.of(settings)
flows = load_flows([settings.flows]).flows
print(json.dumps([render_all(f, templates, org).to_json() for _, f in sorted(flows.items())]))
print(len(_COMPILED))
"""


def test_every_shipped_message_renders_the_same_from_the_disk(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _EVERY_PREVIEW, str(tmp_path / "c")],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        for _ in range(2)
    ]

    assert runs[0][0] == runs[1][0]
    assert len(json.loads(runs[0][0])) >= 4
    assert int(runs[0][1]) > 100  # as many codes compiled, then read back
    assert len(list((tmp_path / "c").iterdir())) == int(runs[0][1])
