"""Where Foundry is: FOUNDRY_SERVICE_DISCOVERY_V2 (a YAML file), FOUNDRY_URL or FOUNDRY_HOSTNAME -> API bases."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from .._errors import ConfigError
from .files import read_text

_HOST_LABEL = r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def _base_url(var: str, raw: str) -> str:
    """`host`, `host:port` or an http(s) URL, as `scheme://netloc/path` without a trailing slash."""
    value = raw.strip()
    bad = ConfigError(
        f"{var} {raw!r} is not a host, host:port or http(s) URL: use e.g. foundry.example.com or http://127.0.0.1:8080"
    )
    parts = urlsplit(value if "://" in value else f"https://{value}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{var} must not contain credentials: the job token comes from BUILD2_TOKEN")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise bad
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad from None
    if ":" in parts.hostname:
        try:
            ipaddress.IPv6Address(parts.hostname)
        except ValueError:
            raise bad from None
    elif not _HOSTNAME.fullmatch(parts.hostname):
        raise bad
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _with_api_suffix(url: str) -> str:
    return url if url.endswith("/api") else f"{url}/api"


def _first_uri(value: Any) -> str | None:
    """Discovery values are `[uri, ...]`, `{uris: [...]}` or a bare string."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    if isinstance(value, dict):
        return _first_uri(value.get("uris"))
    return None


def discovered_bases(path: Path) -> tuple[str, str]:
    var = "FOUNDRY_SERVICE_DISCOVERY_V2"
    shape = "expected `api_gateway: [https://host/api]` and `stream_proxy: [https://host/stream-proxy/api]`"
    try:
        data = yaml.safe_load(read_text(var, path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{var} file {path} is not valid YAML{line}: {shape}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{var} file {path} is not a YAML mapping: {shape}")
    services = {str(k).lower().replace("-", "_"): v for k, v in data.items()}
    if "api_gateway" not in services:
        raise ConfigError(f"{var} file {path} has no api_gateway entry: {shape}")
    uris: dict[str, str] = {}
    for name in ("api_gateway", "stream_proxy"):
        if name not in services:
            continue
        uri = _first_uri(services[name])
        if uri is None:
            raise ConfigError(f"{var} file {path} entry {name} has no URL: {shape}")
        uris[name] = _with_api_suffix(_base_url(f"{var} {name}", uri))
    api = uris["api_gateway"]
    return api, uris.get("stream_proxy", api)


def bases_from_url(var: str, raw: str) -> tuple[str, str]:
    """A plain host serves every v2 path, highScale ones included, under /api (as the official SDK assumes)."""
    api = f"{_base_url(var, raw).removesuffix('/api')}/api"
    return api, api
