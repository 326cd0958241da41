"""Every public method of the SDK's streams, datasets and media_sets clients is either called against the
fake by an SDK test (each declares the methods it calls in `SDK_METHODS`) or on the documented
platform-only list (`PLATFORM_ONLY`, also called, to prove the denial, and listed in docs/fake.md).

The methods are found by introspecting the installed `foundry_sdk`, so a new SDK release that adds a
method fails here, by name, until it is served and tested or documented as out of scope.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import foundry_sdk.v2

from tests.fake import test_datasets_sdk, test_sdk_surface, test_streams_sdk

NAMESPACES = ("streams", "datasets", "media_sets")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "fake.md"


def sdk_methods() -> set[str]:
    """`namespace.Resource.method` for each public method of each namespace's (sync) resource clients."""
    found: set[str] = set()
    for namespace in NAMESPACES:
        package = importlib.import_module(f"{foundry_sdk.v2.__name__}.{namespace}")
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_") or info.name in ("errors", "models"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, cls in vars(module).items():
                if not inspect.isclass(cls) or cls.__module__ != module.__name__ or not name.endswith("Client"):
                    continue
                if name.startswith(("_", "Async")) or "Raw" in name or "Streaming" in name:
                    continue
                resource = name.removesuffix("Client")
                found |= {
                    f"{namespace}.{resource}.{method}"
                    for method, fn in vars(cls).items()
                    if not method.startswith("_") and inspect.isfunction(inspect.unwrap(fn))
                }
    return found


EXERCISED = test_streams_sdk.SDK_METHODS | test_datasets_sdk.SDK_METHODS | test_sdk_surface.SDK_METHODS
PLATFORM_ONLY = test_sdk_surface.PLATFORM_ONLY


def test_every_sdk_method_is_exercised_or_documented_out_of_scope() -> None:
    methods = sdk_methods()
    assert len(methods) > 50, "the introspection found too few methods: has the SDK's layout changed?"
    unaccounted = methods - EXERCISED - PLATFORM_ONLY
    assert not unaccounted, (
        f"SDK methods neither tested against the fake nor documented out of scope: {sorted(unaccounted)}"
    )
    stale = (EXERCISED | PLATFORM_ONLY) - methods
    assert not stale, f"registered methods the SDK no longer has: {sorted(stale)}"
    assert not EXERCISED & PLATFORM_ONLY, sorted(EXERCISED & PLATFORM_ONLY)


def test_out_of_scope_methods_are_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    undocumented = [m for m in sorted(PLATFORM_ONLY) if f"`{m}`" not in docs]
    assert not undocumented, f"out-of-scope methods missing from docs/fake.md: {undocumented}"
