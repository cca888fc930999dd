"""``localization.method`` -> its map source (:mod:`camexp.maps.sources`), looked up once."""

from __future__ import annotations

from camexp.maps.backprop import BackpropSaliency
from camexp.maps.posthoc import POSTHOC_METHODS
from camexp.maps.rollout import AttentionRollout
from camexp.maps.sources import MapSettings, MapSource
from camexp.maps.trained import TrainedMaps

MAP_SOURCES: dict[str, type[MapSource]] = {
    cls.name: cls
    for cls in (TrainedMaps, BackpropSaliency, *POSTHOC_METHODS.values(), AttentionRollout)
}


def map_source(method: str, settings: MapSettings | None = None) -> MapSource:
    """The source of ``localization.method=method`` (a key of :data:`MAP_SOURCES`)."""
    if method not in MAP_SOURCES:
        raise ValueError(f"localization.method={method!r}; use one of {tuple(MAP_SOURCES)}.")
    return MAP_SOURCES[method](settings)
