"""Channel kinds: one module per kind, registered explicitly in ``registry.py``."""
