"""Write pipeline-mode connectors for Palantir Foundry compute modules.

Subclass `Connector`, declare typed handles bound to aliases of the job's resource alias map, write a
transform (or a free-running `run`), and start it with `connector run package.module:ClassName`.
"""

from ._connector import Connector, current_batch
from ._datasets import DatasetFile, DatasetInput, DatasetOutput, DatasetTransaction
from ._errors import (
    ConfigError,
    ConnectorError,
    FoundryError,
    NotFoundError,
    PermissionDeniedError,
    RecordValidationError,
    UnauthorizedError,
)
from ._http import FoundryClient, RetryPolicy
from ._media import MediaItemInfo, MediaItemPathError, MediaSetInput, MediaSetOutput, MediaTransaction
from ._schema import stream_schema
from ._settings import Environment, ResourceRef, RuntimeSettings, load_environment, load_settings
from ._stream_output import DeadLetter, DeadLetterOutput, StreamOutput
from ._streams import InputBatch, StreamInput

__all__ = [
    "ConfigError",
    "Connector",
    "ConnectorError",
    "DatasetFile",
    "DatasetInput",
    "DatasetOutput",
    "DatasetTransaction",
    "DeadLetter",
    "DeadLetterOutput",
    "Environment",
    "FoundryClient",
    "FoundryError",
    "InputBatch",
    "MediaItemInfo",
    "MediaItemPathError",
    "MediaSetInput",
    "MediaSetOutput",
    "MediaTransaction",
    "NotFoundError",
    "PermissionDeniedError",
    "RecordValidationError",
    "ResourceRef",
    "RetryPolicy",
    "RuntimeSettings",
    "StreamInput",
    "StreamOutput",
    "UnauthorizedError",
    "current_batch",
    "load_environment",
    "load_settings",
    "stream_schema",
]
