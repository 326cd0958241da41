"""Write pipeline-mode connectors for Palantir Foundry compute modules.

Subclass `Connector`, declare typed handles bound to aliases of the job's resource alias map, write a
transform (or a free-running `run`), and start it with `connector run package.module:ClassName`.
"""

from ._connector import Connector, current_batch
from ._datasets.api import DatasetFile
from ._datasets.handles import DatasetInput, DatasetOutput
from ._datasets.transactions import DatasetTransaction
from ._env.environment import Environment, ResourceRef, load_environment
from ._env.settings import RuntimeSettings, load_settings
from ._env.sources import HttpConnectionConfig, SourceConfiguration, SourceCredentials
from ._errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    ConnectorError,
    FoundryError,
    MalformedResponseError,
    MediaItemPathError,
    NotFoundError,
    PermissionDeniedError,
    RecordValidationError,
    RequestTooLargeError,
    RetryableError,
    UnauthorizedError,
)
from ._functions import FunctionModule, JobContext, function
from ._handles import HandleMetrics
from ._http import FoundryClient, RetryPolicy
from ._media.handles import MediaItemInfo, MediaSetInput, MediaSetOutput, MediaTransaction
from ._sls import mark_safe, safe
from ._state.changelog import ChangelogEntry
from ._state.checkpoint import StateLimitError
from ._state.keyed import KeyedState
from ._state.windowed import Windowed
from ._state.windows import Aggregate, Hopping, Reduce, Session, Sliding, Tumbling, WindowResult
from ._streams.dead_letters import DeadLetter, DeadLetterOutput
from ._streams.input import InputBatch, StreamInput
from ._streams.output import StreamOutput
from ._streams.schema import stream_schema

__all__ = [
    "Aggregate",
    "BadRequestError",
    "ChangelogEntry",
    "ConfigError",
    "ConflictError",
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
    "FunctionModule",
    "HandleMetrics",
    "Hopping",
    "HttpConnectionConfig",
    "InputBatch",
    "JobContext",
    "KeyedState",
    "MalformedResponseError",
    "MediaItemInfo",
    "MediaItemPathError",
    "MediaSetInput",
    "MediaSetOutput",
    "MediaTransaction",
    "NotFoundError",
    "PermissionDeniedError",
    "RecordValidationError",
    "Reduce",
    "RequestTooLargeError",
    "ResourceRef",
    "RetryPolicy",
    "RetryableError",
    "RuntimeSettings",
    "Session",
    "Sliding",
    "SourceConfiguration",
    "SourceCredentials",
    "StateLimitError",
    "StreamInput",
    "StreamOutput",
    "Tumbling",
    "UnauthorizedError",
    "WindowResult",
    "Windowed",
    "current_batch",
    "function",
    "load_environment",
    "load_settings",
    "mark_safe",
    "safe",
    "stream_schema",
]
