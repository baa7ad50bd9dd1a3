"""Built-in adapters; installed as bridge.plugins."""
