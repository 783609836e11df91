"""Recurring jobs: schedules in Redis (redbeat entries), their ticks, and the run each tick fires."""

from coordinator.recurring.manager import RecurringManager

__all__ = ["RecurringManager"]
