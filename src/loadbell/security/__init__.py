"""Secrets at rest, API tokens and masking."""
