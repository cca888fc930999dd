"""What a run says about itself at start: its composed config as a tree, and its tags.

The tree (rich) is printed by the main process and saved as ``<run>/config_tree.txt``, so a run
folder says what ran even without a logger. Sweeps need ``tags`` (from the experiment preset,
or ``tags=[...]``): a search's or a sweep's runs are found again by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from camexp.core.errors import MissingTagsError

TREE_FILE = "config_tree.txt"
# printed first, in this order; the other top-level keys follow in the config's order
FIRST = ("data", "model", "method", "localization", "callbacks", "logger", "trainer", "paths")


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def require_tags(cfg: DictConfig) -> None:
    """In a sweep (``-m``), the run must carry ``tags``."""
    if not _is_multirun():
        return
    tags = cfg.get("tags")
    if not tags:
        raise MissingTagsError(
            "This sweep has no tags. Every run of a sweep or search (camexp.train and "
            "camexp.eval alike) is tagged so it can be found again (W&B, reports): use an "
            "experiment preset (its `tags:`, e.g. experiment=wsol_cub_vgg16) or pass tags naming "
            "the sweep, e.g. \"tags=[search,cub,vgg16]\" (an eval sweep: \"tags=[thresholds]\")."
        )


def config_tree(cfg: DictConfig, first: Sequence[str] = FIRST, resolve: bool = True):
    """A :class:`rich.tree.Tree` of the config: one branch per top-level key, its YAML inside."""
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in first if k in cfg] + [k for k in cfg if k not in first]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        raw = cfg._get_node(key)
        node = raw if OmegaConf.is_config(raw) else None
        try:
            text = OmegaConf.to_yaml(node, resolve=resolve) if node is not None else str(cfg[key])
        except Exception:  # an interpolation that only resolves later (e.g. outside Hydra), ???
            text = OmegaConf.to_yaml(node, resolve=False) if node is not None else str(raw._value())
        branch.add(Syntax(text, "yaml", theme="ansi_dark", word_wrap=True))
    return tree


def print_config_tree(cfg: DictConfig) -> None:
    """Print the tree when ``print_config`` is true (the tools that keep no run folder)."""
    if cfg.get("print_config"):
        from rich.console import Console

        Console().print(config_tree(cfg))


def save_config_tree(cfg: DictConfig, output_dir: str | Path, show: bool = True) -> Path:
    """Print the tree (``show``) and write it, without colours, to ``<output_dir>/config_tree.txt``."""
    from rich.console import Console

    tree = config_tree(cfg)
    if show:
        Console().print(tree)
    path = Path(output_dir) / TREE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        Console(file=handle, width=120, no_color=True, color_system=None).print(tree)
    return path


def start_run(cfg: DictConfig, tags_required: bool = True) -> None:
    """Check the tags of a sweep (``tags_required``); print and save the config tree (main
    process only)."""
    if tags_required:
        require_tags(cfg)
    if rank_zero_only.rank == 0 and cfg.get("paths") is not None:
        save_config_tree(cfg, cfg.paths.output_dir, show=bool(cfg.get("print_config", True)))
