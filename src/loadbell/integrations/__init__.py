"""Talking to the outside world that is not a delivery: load-test tools and service APIs."""
