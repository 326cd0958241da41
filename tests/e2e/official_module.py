"""A function-mode module written with Palantir's own `foundry-compute-modules` client (run as a script).

It polls the fake over https with the CA from CONNECTIONS_TO_OTHER_PODS_CA_PATH, exactly as in Foundry.
No `from __future__ import annotations`: the client resolves annotations with `typing.get_type_hints(fn, globalns={})`.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from compute_modules.annotations import function
from compute_modules.context import QueryContext


@dataclass
class AddPayload:
    x: int
    y: int


@dataclass
class CountPayload:
    n: int


@function
def add(context: QueryContext, event: AddPayload) -> int:
    return event.x + event.y


@function(streaming=True)
def count(context: QueryContext, event: CountPayload) -> Iterable[dict[str, int]]:
    for i in range(event.n):
        yield {"i": i}


@function
def fail(context: QueryContext, event: CountPayload) -> int:
    raise ValueError(f"deliberate failure for {event.n}")


@function
def whoami(context: QueryContext, event: CountPayload) -> str:
    return str(context.jobId)
