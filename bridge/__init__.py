"""smsbridge: pages people by SMS and carries SMS conversations into team chat."""

__version__ = "0.1.0"
