"""The `smsbridge` subcommands, one module per family."""
