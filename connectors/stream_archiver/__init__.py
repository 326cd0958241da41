"""A stream archived into a dataset as Parquet: one APPEND transaction per flush, offsets committed after it."""

from .connector import ArchivedEvent, ArchiverSettings, Event, StreamArchiver

__all__ = ["ArchivedEvent", "ArchiverSettings", "Event", "StreamArchiver"]
