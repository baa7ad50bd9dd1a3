"""Project-wide fixtures come from bridge.testing, the same helpers adapter authors get."""

pytest_plugins = ["bridge.testing"]
