"""Jobs waiting to go out, and the dispatcher that hands them to outputs."""

from bridge.outbox import jobs, retention
from bridge.outbox.dispatcher import Dispatcher, RetryPolicy
from bridge.outbox.jobs import JobRecord, JobState

__all__ = [
    "Dispatcher",
    "JobRecord",
    "JobState",
    "RetryPolicy",
    "jobs",
    "retention",
]
