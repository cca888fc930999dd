"""Map methods beyond CAM: post-hoc maps (the Grad-CAM family) and their target layers."""
