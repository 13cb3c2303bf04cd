"""Delivery: the outbox claim, the worker, the retry policy and the one outbound HTTP sender."""
