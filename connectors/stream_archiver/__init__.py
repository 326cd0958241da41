"""A stream archived into a dataset as Parquet: one APPEND transaction per flush, offsets committed after it."""

from .connector import ArchiverSettings, Event, StreamArchiver

__all__ = ["ArchiverSettings", "Event", "StreamArchiver"]
