"""No file of the repository points at something the repository does not hold.

Every tracked text file (``git ls-files``, test fixtures left out) is read, and each check lists
what it finds as ``file:line: ...``:

- a pointer at the developers' own notes, which users do not have: the notes file by name, or
  a path into the folder beside the repository where such notes live;
- a path into the repository (``conf/...``, ``src/...``, ``tests/...``, ``bench/...``,
  ``docs/...``) that names no file or folder (templates with ``<...>``, ``{...}`` or ``*``, and
  paths git ignores, such as a user's ``conf/local/default.yaml``, are left alone);
- a markdown link to a file that does not exist, or to a heading it does not have;
- a plain-text ``<doc>.md#anchor`` or a quoted section (``docs/methods.md, "ACoL"``,
  ``README's section "..."``) that names no heading of that document;
- a dotted ``camexp....`` name in the README, docs/ or conf/ that imports nothing.

The checks are unit-tested on planted faults below, so a check that finds nothing cannot pass
unnoticed.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.helpers.markdown import anchor, anchors, without_code_blocks

REPO = Path(__file__).resolve().parents[1]
# the fixtures hold files written by camexp; this file holds the planted faults of its own tests
SKIPPED = ("tests/fixtures/", "tests/test_references.py")

# spelled in pieces so that this file does not match its own patterns
NOTES_FILE = "PAPER" + ".md"
NOTES_POINTERS = re.compile(
    "|".join([re.escape(NOTES_FILE), r"\.\./" + "shared\\b", r"(?<![\w.-])" + "shared" + "/"]),
    flags=re.I,
)
ROOTS = ("conf", "src", "tests", "bench", "docs", ".ci")
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:\.\.?/)*(?:" + "|".join(re.escape(r) for r in ROOTS) + r")/[\w./-]*[\w/])"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOC_ANCHOR = re.compile(r"(?<![\w./-])((?:\.\.?/)*[\w./-]*\.md)#([\w-]+)")
QUOTED_SECTION = re.compile(
    r"(docs/[\w-]+\.md|README(?:\.md)?)(?:'s)?(?: section|,)? \"([^\"\n]+)\"")
DOTTED_NAME = re.compile(r"(?<![\w./-])camexp(?:\.\w+)+")


def _git_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [name for name in listed.stdout.decode().split("\0") if name]


@cache
def tracked_texts() -> tuple[tuple[str, str], ...]:
    """``(path relative to the repository, text)`` of every tracked text file."""
    found = []
    for name in _git_files():
        path = REPO / name
        if name.startswith(SKIPPED) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        try:
            found.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return tuple(found)


@cache
def _ignored_by_git(path: str) -> bool:
    """A file each user makes (``conf/local/default.yaml``), not one the repository holds."""
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _resolve(target: str, where: Path) -> Path | None:
    """``target`` relative to the file that names it, else to the repository's root."""
    for base in (where.parent, REPO):
        candidate = (base / target).resolve()
        if candidate.exists():
            return candidate
    return None


# -- the checks: each returns its findings as "file:line: what" --------------------------------


def note_pointers(name: str, text: str) -> list[str]:
    return [f"{name}:{_line(text, m.start())}: points at {m.group(0)!r}, which users do not have"
            for m in NOTES_POINTERS.finditer(text)]


def missing_paths(name: str, text: str) -> list[str]:
    found = []
    for match in REPO_PATH.finditer(text):
        following = text[match.end():match.end() + 1]
        if following in "<{*" and following:
            continue  # a template: wsol_<dataset>..., {a,b}, test_*.py
        target = match.group(1).split("::")[0]
        if _resolve(target, REPO / name) is None and not _ignored_by_git(target):
            found.append(f"{name}:{_line(text, match.start())}: {target} does not exist")
    return found


def broken_links(name: str, text: str) -> list[str]:
    if not name.endswith(".md"):
        return []
    found = []
    body = without_code_blocks(text)
    for match in LINK.finditer(body):
        target = match.group(1)
        if re.match(r"[a-z]+:", target):
            continue  # https://..., mailto:
        file, _, fragment = target.partition("#")
        path = _resolve(file, REPO / name) if file else REPO / name
        where = f"{name}:{_line(body, match.start())}"
        if path is None or not path.is_file():
            found.append(f"{where}: link {target}: no file {file}")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            found.append(f"{where}: link {target}: no heading #{fragment} in {path.name}")
    return found


def broken_sections(name: str, text: str) -> list[str]:
    found = []
    for match in DOC_ANCHOR.finditer(text):
        path = _resolve(match.group(1), REPO / name)
        if path is not None and match.group(2) not in anchors(path):
            found.append(f"{name}:{_line(text, match.start())}: {match.group(0)}: "
                         f"{path.name} has no heading #{match.group(2)}")
    for match in QUOTED_SECTION.finditer(text):
        document = match.group(1) if match.group(1).endswith(".md") else "README.md"
        path = REPO / document
        if not path.is_file() or anchor(match.group(2)) not in anchors(path):
            found.append(f"{name}:{_line(text, match.start())}: {match.group(0)}: "
                         f"{document} has no heading {match.group(2)!r}")
    return found


def _resolves(dotted: str) -> bool:
    """A module, or a module's attribute (a class's attribute too)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


def unknown_names(name: str, text: str) -> list[str]:
    if not (name == "README.md" or name.startswith(("docs/", "conf/"))):
        return []
    return [f"{name}:{_line(text, m.start())}: {m.group(0)} imports nothing"
            for m in DOTTED_NAME.finditer(text) if not _resolves(m.group(0))]


CHECKS = [note_pointers, missing_paths, broken_links, broken_sections, unknown_names]


# -- the repository ----------------------------------------------------------------------------


def test_the_tracked_files_are_read() -> None:
    names = {name for name, _ in tracked_texts()}
    assert {"README.md", "docs/protocol.md", "docs/methods.md", "conf/train.yaml",
            "src/camexp/train.py", "tests/test_docs.py", "conf/local/example.yaml"} <= names
    assert not any(name.startswith(SKIPPED) for name in names)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_no_file_points_at_what_the_repository_does_not_hold(check) -> None:
    found = [finding for name, text in tracked_texts() for finding in check(name, text)]
    assert not found, "\n".join(found)


# -- each check finds a planted fault ----------------------------------------------------------


def test_pointers_at_the_developers_notes_are_found() -> None:
    folder = "shared"
    text = f"see {NOTES_FILE} 4.5\nor ../{folder}/notes\nor {folder}/x.md\n{folder} memory"
    found = note_pointers("src/camexp/x.py", text)
    # one finding per pointer, with its line; "shared memory" is no path
    assert [f.split(":")[1] for f in found] == ["1", "2", "3"]


def test_paths_to_missing_files_are_found_and_templates_are_not() -> None:
    text = ("docs/protocol.md and src/camexp/methods/ exist; tests/methods/test_e2e.py::test_x too\n"
            "docs/nothing.md is gone, and so is tests/test_methods_e2e.py::test_y\n"
            "conf/experiment/wsol_<dataset>.yaml, tests/<package>/test_*.py, docs/*.md are templates\n"
            "and conf/local/default.yaml is a user's own file\n")
    found = missing_paths("src/camexp/x.py", text)
    assert found == ["src/camexp/x.py:2: docs/nothing.md does not exist",
                     "src/camexp/x.py:2: tests/test_methods_e2e.py does not exist"]


def test_broken_links_are_found() -> None:
    text = ("[a](methods.md#has) [b](methods.md#no-such-heading) [c](missing.md) "
            "[d](../README.md#datasets) [e](https://example.org/x.md#y)\n"
            "```\n[f](inside-a-code-block.md)\n```\n")
    found = broken_links("docs/x.md", text)
    assert len(found) == 2
    assert "no heading #no-such-heading in methods.md" in found[0]
    assert "no file missing.md" in found[1]


def test_sections_that_do_not_exist_are_found() -> None:
    text = ('docs/methods.md, "ACoL" and docs/methods.md#schedule exist;\n'
            'docs/methods.md, "Acoll" and docs/protocol.md#no-such-section do not;\n'
            "README's section \"The field's protocol\" exists, README \"Nowhere\" does not\n")
    found = broken_sections("src/camexp/x.py", text)
    assert len(found) == 3
    assert "docs/protocol.md#no-such-section" in found[0]
    assert "'Acoll'" in found[1] and "'Nowhere'" in found[2]


def test_dotted_names_that_import_nothing_are_found() -> None:
    text = ("camexp.localization.metrics.MaxBoxAccV2, camexp.methods.ACoL, python -m camexp.train.\n"
            "camexp.search.TrialProcesses, camexp.nothing_here\n")
    found = unknown_names("docs/x.md", text)
    assert found == ["docs/x.md:2: camexp.search.TrialProcesses imports nothing",
                     "docs/x.md:2: camexp.nothing_here imports nothing"]
    assert unknown_names("tests/x.py", text) == []
