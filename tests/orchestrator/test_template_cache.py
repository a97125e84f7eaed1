"""Compiled template code kept on disk: a later process renders the same, and trusts only
a directory of its own user's."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import templates as templates_module
from orchestrator.errors import TemplateError
from orchestrator.event import Channel
from orchestrator.settings import Settings
from orchestrator.template_cache import (
    SUBDIRECTORY,
    DiskCode,
    TemplateCacheError,
    UnsafeCacheDirError,
    default_directory,
)
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
    for path in (cache / SUBDIRECTORY).iterdir():
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
    refused = [shared]
    if os.getuid() == 0:
        import grp

        # A group of several users' (the user's own private group is let in).
        group = tmp_path / "group"
        group.mkdir()
        group.chmod(0o770)
        os.chown(group, 0, grp.getgrnam("daemon").gr_gid)
        refused.append(group)

    for directory in refused:
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


def test_a_missing_directory_and_its_parents_are_made_for_this_user_alone(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "a" / "b"
    mask = os.umask(0)  # parents once took the umask's mode: 0777 here
    try:
        DiskCode(directory)
    finally:
        os.umask(mask)

    for made in (tmp_path / "a", directory, directory / SUBDIRECTORY):
        assert made.stat().st_mode & 0o777 == 0o700, made


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
    assert sorted(p.name for p in (Path(directory) / SUBDIRECTORY).iterdir()) == [
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

    sizes = sum(p.stat().st_size for p in (tmp_path / "cache" / SUBDIRECTORY).iterdir())
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
from orchestrator.templates import TemplateSet, keep_compiled_in, _BoundedEnvironment
compiled = []
original = _BoundedEnvironment.compile
def counting(self, source, name=None, *args):
    compiled.append(name)
    return original(self, source, name, *args)
_BoundedEnvironment.compile = counting
settings = Settings()
keep_compiled_in(Path(sys.argv[1]))
templates = TemplateSet(settings.templates)
org = Organisation.of(settings)
flows = load_flows([settings.flows]).flows
print(json.dumps([render_all(f, templates, org).to_json() for _, f in sorted(flows.items())]))
print(len(compiled))
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
    assert int(runs[0][1]) > 100  # every code compiled, and kept
    assert len(list((tmp_path / "c" / SUBDIRECTORY).iterdir())) == int(runs[0][1])
    assert int(runs[1][1]) == 0  # then every one read back


def _entry_bytes(tmp_path: Path, key: str, code: types.CodeType) -> bytes:
    """A well-formed entry for `key`, as someone else could write one."""
    other = DiskCode(tmp_path / "other")
    other.store(key, code)
    return other._path(key).read_bytes()


def test_pruning_removes_only_the_caches_own_files(tmp_path: Path) -> None:
    # ORCHESTRATOR_TEMPLATE_CACHE=. once pruned the oldest files of the project itself.
    project = tmp_path / "project"
    project.mkdir(mode=0o755)
    (project / "orchestrator.db").write_bytes(b"x" * 5000)
    os.utime(project / "orchestrator.db", (1, 1))
    disk = DiskCode(project, max_bytes=4000)
    entries = disk._path("0" * 64).parent
    (entries / "mine.txt").write_bytes(b"z" * 5000)  # not a name the cache makes
    os.utime(entries / "mine.txt", (1, 1))
    stale = entries / ".tmp-0123456789abcdef"  # left by a writer that died
    stale.write_bytes(b"t" * 3000)
    os.utime(stale, (1, 1))
    writing = entries / ".tmp-fedcba9876543210"  # a writer at work
    writing.write_bytes(b"t" * 10)
    code = compile("x = [" + "1, " * 300 + "]", "big", "exec")
    for i in range(4):
        disk.store(f"{i:064x}", code)

    assert (project / "orchestrator.db").read_bytes() == b"x" * 5000
    assert (entries / "mine.txt").exists()
    assert writing.exists()
    assert not stale.exists()
    assert disk.load(f"{3:064x}") is not None


def test_a_directory_swapped_after_the_check_is_not_read(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    disk = DiskCode(cache)
    key = "e" * 64
    disk.store(key, compile("1", "mine", "eval"))
    planted = _entry_bytes(tmp_path, key, compile("2", "theirs", "eval"))
    swapped = disk._path(key).parent
    os.rename(cache, tmp_path / "moved")  # someone who can write a parent swaps the directory
    swapped.mkdir(mode=0o700, parents=True)
    (swapped / f"{key}.code").write_bytes(planted)

    found = disk.load(key)

    assert found is None or eval(found) == 1


@pytest.mark.parametrize("plant", ["symlink", "hard link", "fifo", "group-writable"])
def test_a_planted_entry_is_not_read(tmp_path: Path, plant: str) -> None:
    disk = DiskCode(tmp_path / "cache")
    key = "f" * 64
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(_entry_bytes(tmp_path, key, compile("2", "theirs", "eval")))
    elsewhere.chmod(0o600)
    target = disk._path(key)
    if plant == "symlink":
        target.symlink_to(elsewhere)
    elif plant == "hard link":
        os.link(elsewhere, target)
    elif plant == "fifo":
        os.mkfifo(target, 0o600)
    else:
        target.write_bytes(elsewhere.read_bytes())
        target.chmod(0o620)
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(disk.load(key)), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # waiting on the FIFO: let it go
        with contextlib.suppress(OSError):
            os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))

    assert found == [None]


def test_a_parent_others_may_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    with pytest.raises(UnsafeCacheDirError, match=r"parent .*open writable by group or others"):
        DiskCode(open_to_all / "cache")
    assert list(open_to_all.iterdir()) == []

    sticky = tmp_path / "sticky"  # as /tmp: no one may move what is not theirs
    sticky.mkdir()
    sticky.chmod(0o1777)
    DiskCode(sticky / "cache")


def test_a_symlink_among_the_parents_is_followed(tmp_path: Path) -> None:
    # /home may be a link to /var/home: only the directory named must not be one.
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    disk = DiskCode(tmp_path / "link" / "cache")
    disk.store("a" * 64, compile("1", "one", "eval"))

    assert (tmp_path / "real" / "cache" / SUBDIRECTORY / f"{'a' * 64}.code").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory away takes root")
def test_a_parent_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)

    with pytest.raises(UnsafeCacheDirError, match=r"parent .*theirs owned by another user"):
        DiskCode(theirs / "cache")


def test_without_its_source_a_process_renders_and_keeps_nothing_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiles: list[str | None]
) -> None:
    # An install of bytecode alone, or a zip: templates.py cannot be read.
    class Sourceless:
        def get_source(self, name: str) -> str:
            raise ImportError(name)

        def get_code(self, name: str) -> None:
            return None

    monkeypatch.setattr(templates_module, "__file__", str(tmp_path / "gone.py"))
    monkeypatch.setattr(templates_module, "__loader__", Sourceless())
    templates_module._code_version.cache_clear()
    try:
        first = _renders(tmp_path)
        again = _renders(tmp_path)
        with pytest.raises(TemplateCacheError, match="source cannot be read"):
            keep_compiled_in(tmp_path / "cache")
    finally:
        monkeypatch.undo()
        templates_module._code_version.cache_clear()

    assert again == first
    assert len(compiles) == 3  # the memory tier still serves the second
    assert templates_module._COMPILED.disk is None
    assert not (tmp_path / "cache").exists()


def test_without_its_file_the_loaders_source_gives_the_same_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = templates_module._BoundedEnvironment()
    before = templates_module._COMPILED.get_bucket(environment, "n", "f", "s").key
    monkeypatch.setattr(templates_module, "__file__", str(tmp_path / "gone.py"))
    templates_module._code_version.cache_clear()
    try:
        after = templates_module._COMPILED.get_bucket(environment, "n", "f", "s").key
        stable = templates_module._code_version()[1]
    finally:
        monkeypatch.undo()
        templates_module._code_version.cache_clear()

    assert (after, stable) == (before, True)


@pytest.mark.parametrize("setting", ["~nosuchuser-orchestrator/c", ""])
def test_no_home_directory_is_a_warning_and_no_disk_cache(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    from rich.console import Console

    from orchestrator.cli.options import keep_templates_compiled

    def no_home(cls: type[Path]) -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(no_home))
    err = Console(file=io.StringIO(), width=200)
    try:
        keep_templates_compiled(Settings(template_cache=setting), err)
    finally:
        keep_compiled_in(None)

    assert "not used: " in err.file.getvalue()  # type: ignore[attr-defined]
    assert templates_module._COMPILED.disk is None


def _key(environment: jinja2.Environment) -> str:
    return templates_module._COMPILED.get_bucket(environment, "n", "f", "{{ x }}").key


@jinja2.pass_context
def _with_context(context: object, value: object) -> object:
    return value


def test_the_key_holds_every_option_the_compiler_reads() -> None:
    make = templates_module._BoundedEnvironment
    with_filter = make()
    with_filter.filters["extra"] = str
    with_context_filter = make()
    with_context_filter.filters["extra"] = _with_context
    with_test = make()
    with_test.tests["extra"] = callable
    environments = [
        make(),
        make(variable_end_string="]]"),
        make(block_end_string="%]"),
        make(comment_end_string="#]"),
        make(enable_async=True),
        make(autoescape=jinja2.select_autoescape(["html"])),
        make(autoescape=jinja2.select_autoescape(["xml"])),
        with_filter,
        with_context_filter,
        with_test,
    ]

    assert len({_key(environment) for environment in environments}) == len(environments)


def test_the_key_changes_with_jinjas_compiler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A distribution's patched Jinja2 keeps the version number.
    import jinja2.compiler

    environment = templates_module._BoundedEnvironment()
    before = _key(environment)
    patched = tmp_path / "compiler.py"
    patched.write_bytes(Path(jinja2.compiler.__file__).read_bytes() + b"\n# patched\n")
    monkeypatch.setattr(jinja2.compiler, "__file__", str(patched))
    templates_module._code_version.cache_clear()
    try:
        after = _key(environment)
    finally:
        monkeypatch.undo()
        templates_module._code_version.cache_clear()

    assert after != before


def test_a_symlink_in_place_of_the_caches_subdirectory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir(mode=0o700)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "cache" / SUBDIRECTORY).symlink_to(tmp_path / "elsewhere")

    with pytest.raises(UnsafeCacheDirError, match="not a directory"):
        DiskCode(tmp_path / "cache")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), keep=st.integers(min_value=0, max_value=400))
def test_whatever_an_entry_holds_a_load_is_code_or_a_miss(
    tmp_path: Path, data: bytes, keep: int
) -> None:
    disk = DiskCode(tmp_path / "fuzz")
    key = "9" * 64
    disk.store(key, compile("1", "one", "eval"))
    whole = disk._path(key).read_bytes()
    disk._path(key).write_bytes(whole[:keep] + data)

    found = disk.load(key)

    assert found is None or eval(found) == 1


def test_the_code_version_is_read_as_the_module_is_imported() -> None:
    # Read at the first template instead, an upgrade installed in between would
    # file this process's code under the new code's key, for every later process.
    probe = "import orchestrator.templates as t; print(t._code_version.cache_info().currsize)"
    found = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert found.stdout.strip() == "1"


def test_a_jinja_without_one_of_its_compiling_modules_still_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = templates_module.importlib.import_module

    def without_optimizer(name: str, *args: object) -> types.ModuleType:
        if name == "jinja2.optimizer":
            raise ImportError(name)
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(templates_module.importlib, "import_module", without_optimizer)
    templates_module._code_version.cache_clear()
    try:
        stable = templates_module._code_version()[1]
        rendered = _renders(tmp_path)
    finally:
        monkeypatch.undo()
        templates_module._code_version.cache_clear()

    assert stable is False
    assert rendered


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another group takes root")
def test_a_parent_only_the_users_own_group_may_write_is_accepted(tmp_path: Path) -> None:
    # Debian's and Ubuntu's user-private groups, with umask 002: ~/.cache is 0775.
    import grp

    own = tmp_path / "own"
    own.mkdir()
    own.chmod(0o775)
    os.chown(own, 0, 0)  # root's private group: "root", no other member listed
    assert grp.getgrgid(0).gr_mem == []
    DiskCode(own / "cache")

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    os.chown(shared, 0, grp.getgrnam("daemon").gr_gid)
    with pytest.raises(UnsafeCacheDirError, match=r"parent .*shared writable by group"):
        DiskCode(shared / "cache")


def test_dot_dot_after_a_link_means_the_links_parent(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True, mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")

    DiskCode(tmp_path / "link" / ".." / "cache")

    assert (tmp_path / "a" / "cache" / SUBDIRECTORY).is_dir()
    assert not (tmp_path / "cache").exists()
