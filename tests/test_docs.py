"""Every train/eval command written in README.md and docs/*.md composes through Hydra and
passes the checks the CLI applies before it runs (camexp's config checks, and in a sweep, ``-m``,
the tags every swept run must carry): a renamed group, option or key, or a sweep the CLI would
refuse, breaks this test, not a reader."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

from camexp.config.validate import validate
from camexp.core.errors import MissingTagsError
from camexp.runs.start import require_tags
from tests.helpers.configs import compose_config
from tests.helpers.markdown import anchor, anchors

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m camexp\.(train|eval|check_data|eval_maps|write_metadata)(?![\w.])(.*)")
MULTIRUN = "-m"


def _commands(path: Path) -> list[tuple[str, str, list[str]]]:
    """(where, entry point, overrides) of each command in fenced blocks and inline code; a
    sweep keeps its ``-m``."""
    text = path.read_text()
    found = []
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    pieces = [block.replace("\\\n", " ") for block in fenced]
    pieces += [span for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))]
    for piece in pieces:
        for line in piece.splitlines():
            match = COMMAND.search(line.split(" # ")[0])
            if not match:
                continue
            tokens = [t for t in shlex.split(match.group(2), posix=True)
                      if t != "-m" and not re.search(r"[<>$()&|]|\.\.\.", t)]
            if any(t.startswith("--config") for t in tokens):
                continue  # composed from another config folder (a search's best-trial preset)
            multirun = any(t in ("-m", "--multirun") for t in shlex.split(match.group(2), posix=True))
            tokens = ([MULTIRUN] if multirun else []) + [t for t in tokens if not t.startswith("-")]
            if tokens:
                found.append((f"{path.name}: {line.strip()[:90]}", match.group(1), tokens))
    return found


CASES = [case for doc in DOCS for case in _commands(doc)]


def _expand(tokens: list[str]) -> list[list[str]]:
    """A sweep ``key=a,b`` becomes one command per value (lists ``[a,b]`` stay as they are)."""
    options = []
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep and "," in value and not value.startswith("["):
            options.append([f"{key}={v}" for v in value.split(",")])
        else:
            options.append([token])
    return [list(combination) for combination in itertools.product(*options)][:24]


def test_the_docs_have_commands_to_check() -> None:
    assert len(CASES) >= 10
    assert any("method=" in " ".join(tokens) for _, _, tokens in CASES)
    assert {entry for _, entry, _ in CASES} == {"train", "eval", "check_data", "eval_maps", "write_metadata"}


def cli_checks(entry: str, overrides: list[str], multirun: bool, tmp_path: Path) -> None:
    """What ``python -m camexp.<entry> [-m] <overrides>`` checks before it trains or tests:
    the composed config (Hydra), camexp's config checks, and in a sweep the tags."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    cfg = compose_config(entry, overrides, tmp_path / "run", tmp_path / "data")
    if multirun:  # as Hydra's multirun job sees itself
        OmegaConf.set_readonly(cfg.hydra, False)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN
        HydraConfig.instance().set_config(cfg)
    if entry in ("train", "eval"):  # the tools that keep runs (check_data, eval_maps: none)
        require_tags(cfg)
    validate(cfg)


@pytest.mark.parametrize("where, entry, tokens", CASES, ids=[c[0] for c in CASES])
def test_documented_command_passes_the_clis_checks(where: str, entry: str, tokens: list[str],
                                                   tmp_path: Path, monkeypatch) -> None:
    import torch

    # as on the machine the docs write for (trainer=gpu|ddp: the 8-GPU node of the README)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    multirun = tokens[0] == MULTIRUN
    for overrides in _expand(tokens[1:] if multirun else tokens):
        cli_checks(entry, overrides, multirun, tmp_path)


def test_a_documented_sweep_without_tags_is_caught(tmp_path: Path) -> None:
    """The check the documented commands get refuses what the CLI refuses (issue 20: the README's
    own-dataset sweep had no tags and stopped with MissingTagsError)."""
    with pytest.raises(MissingTagsError):
        cli_checks("train", ["model.pool=gap"], True, tmp_path)
    with pytest.raises(MissingTagsError):
        cli_checks("eval", ["localization.paper_fraction=0.1"], True, tmp_path)
    cli_checks("eval", ["localization.paper_fraction=0.1", "tags=[thresholds]"], True, tmp_path)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_anchor_rule_on_known_headings() -> None:
    assert anchor("GAP versus GMP at equal classification") == "gap-versus-gmp-at-equal-classification"
    assert anchor("Your own dataset (CUB layout)") == "your-own-dataset-cub-layout"
    assert anchor("Models (`conf/model/`)") == "models-confmodel"
    assert anchor("Where camexp differs from the original code") == (
        "where-camexp-differs-from-the-original-code")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_point_to_files_and_headings_that_exist(doc: Path) -> None:
    broken = []
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, fragment = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.is_file():
            broken.append(f"{target}: no file {path}")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{fragment} in {path.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)
