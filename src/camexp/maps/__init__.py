"""Where scored maps come from: the map sources (the trained method's own map, Backprop
saliency, the Grad-CAM family's post-hoc maps, :mod:`camexp.maps.registry`), the post-hoc
methods' target layers, and the field's centre baseline."""
