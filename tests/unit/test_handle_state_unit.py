"""One rule for handle state: options in `__init__`, everything mutable created by `_on_bind` per bound copy."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pytest
from pydantic import BaseModel

from framework import (
    DatasetInput,
    DatasetOutput,
    DeadLetterOutput,
    MediaSetInput,
    MediaSetOutput,
    StreamInput,
    StreamOutput,
)
from framework._handles import Handle
from framework._http import FoundryClient

from .stream_mocks import Doubled, Number, bind, make_env

IMMUTABLE = (str, int, float, bool, bytes, type(None), tuple, frozenset, type, pa.Schema, MappingProxyType)


class Row(BaseModel):
    n: int


DECLARATIONS: list[Handle] = [
    StreamInput[Number]("numbers"),
    StreamOutput[Doubled]("doubled"),
    DeadLetterOutput("dead_letters"),
    DatasetInput("numbers"),
    DatasetOutput("doubled", model=Row),
    MediaSetInput("numbers"),
    MediaSetOutput("doubled", transactional=True),
]


def mutable_state(handle: Handle) -> dict[str, Any]:
    """Attributes that could be mutated in place (`__orig_class__`, set by `StreamInput[M](...)`, is a type)."""
    return {k: v for k, v in vars(handle).items() if not isinstance(v, IMMUTABLE) and k != "__orig_class__"}


@pytest.mark.parametrize("declared", DECLARATIONS, ids=lambda h: type(h).__name__)
def test_binding_one_declaration_twice_shares_nothing_mutable(declared: Handle, tmp_path: Path) -> None:
    env = make_env(tmp_path)
    client = FoundryClient(env)
    first, second = bind(declared, env, client), bind(declared, env, client)
    a, b, decl = mutable_state(first), mutable_state(second), mutable_state(declared)
    shared = {k for k in a if k in b and a[k] is b[k]}
    assert not shared, f"{type(declared).__name__} bound copies share {sorted(shared)}"
    assert not {k for k in a if k in decl and a[k] is decl[k]}
    stateless = isinstance(declared, DatasetInput | MediaSetInput)
    assert stateless or set(a) - set(decl) - {"_binding"}  # state exists on bound copies only: `_on_bind` made it
    assert first.metrics is not second.metrics
