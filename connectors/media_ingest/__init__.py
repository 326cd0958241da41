"""Files behind an API key on an external HTTP location, copied into a media set, one metadata record each."""

from .connector import IngestSettings, MediaIngest, MediaMetadata, read_ledger
from .source import ExternalSource, FetchError, IndexEntry, SourceAuthError, SourceConfig

__all__ = [
    "ExternalSource",
    "FetchError",
    "IndexEntry",
    "IngestSettings",
    "MediaIngest",
    "MediaMetadata",
    "SourceAuthError",
    "SourceConfig",
    "read_ledger",
]
