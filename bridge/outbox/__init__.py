"""Jobs waiting to go out, and the dispatcher that hands them to outputs."""

from bridge.outbox import bulk, jobs, retention
from bridge.outbox.actions import JobAction, JobActionError, cancel_job, release_job, retry_job
from bridge.outbox.dispatcher import Dispatcher, RetryPolicy
from bridge.outbox.jobs import JobRecord, JobState

__all__ = [
    "Dispatcher",
    "JobAction",
    "JobActionError",
    "JobRecord",
    "JobState",
    "RetryPolicy",
    "bulk",
    "cancel_job",
    "jobs",
    "release_job",
    "retention",
    "retry_job",
]
