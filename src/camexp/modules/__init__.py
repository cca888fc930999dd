"""The LightningModules: a CAM network trained by a WSOL method, and torchvision's classifiers
as they are (for evaluation only); the GPU speed settings they share."""
