"""Early checks of a composed Hydra config: one clear line per mistake, before data is touched."""
