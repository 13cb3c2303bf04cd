"""Wire dialects: how one event becomes one body, per format."""
