"""From accepted events to durable jobs: rules applied, storm control, chat commands, replies."""
