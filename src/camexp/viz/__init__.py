"""Pictures: class activation maps over images, with boxes."""

from camexp.viz.cam_panels import draw_cam_panel, heatmap_overlay

__all__ = ["draw_cam_panel", "heatmap_overlay"]
