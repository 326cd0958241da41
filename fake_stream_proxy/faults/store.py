"""Fault rules in memory: parsed from the admin API's JSON, matched against requests, counted as they fire.

In memory on purpose: a rule is part of one test's set-up, so a restarted fake starts with none.
Rules are tried in the order they were added; see routes.py for the JSON and what each action does.
"""

from __future__ import annotations

import fnmatch
import random
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from ..errors import bad_request, not_found
from ..ids import now_iso

Kind = Literal["status", "latency", "drop", "garbage", "expireToken", "resetStream"]
# Kinds that let the request go on to the fake afterwards; the others decide its answer.
PASS_THROUGH: frozenset[Kind] = frozenset({"latency", "resetStream"})
_KIND_OF_KEY: dict[str, Kind] = {
    "status": "status",
    "latencyMs": "latency",
    "drop": "drop",
    "garbage": "garbage",
    "expireToken": "expireToken",
    "resetStream": "resetStream",
}
_CHOICES = {"drop": ("before", "after"), "garbage": ("not-json", "truncated")}
# Names Foundry's gateway uses; other statuses get `Default:<Reason>`.
_ERROR_NAMES = {429: "Default:TooManyRequests", 500: "Default:Internal", 503: "Default:ServiceUnavailable"}


def invalid(message: str) -> Exception:
    return bad_request("InvalidFaultRule", message=message)


@dataclass(frozen=True)
class Request:
    """What a rule can target: method, path, the calling job (None: admin or no valid token), its stream."""

    method: str
    path: str
    job_rid: str | None
    stream: tuple[str, str] | None  # (rid, branch) from the route, when it names one


@dataclass(frozen=True)
class Match:
    method: str | None  # None: any
    path: str | None  # a glob (fnmatch: `*` crosses `/`)
    path_regex: re.Pattern[str] | None  # searched, so anchor it for a full match
    job_rid: str | None

    def hits(self, request: Request) -> bool:
        return (
            (self.method is None or self.method == request.method)
            and (self.path is None or fnmatch.fnmatchcase(request.path, self.path))
            and (self.path_regex is None or self.path_regex.search(request.path) is not None)
            and (self.job_rid is None or self.job_rid == request.job_rid)
        )

    def to_json(self) -> dict[str, Any]:
        regex = None if self.path_regex is None else self.path_regex.pattern
        return {"method": self.method, "path": self.path, "pathRegex": regex, "jobRid": self.job_rid}


@dataclass(frozen=True)
class Action:
    kind: Kind
    spec: dict[str, Any]  # the action's JSON, checked

    @property
    def status(self) -> int:
        return int(self.spec["status"])

    def error_name(self) -> str:
        name = self.spec.get("errorName")
        if name:
            return str(name)
        return _ERROR_NAMES.get(self.status) or "Default:" + HTTPStatus(self.status).phrase.replace(" ", "")


@dataclass
class FaultRule:
    rule_id: str
    match: Match
    action: Action
    rate: float
    next: int | None
    seed: int | None
    rng: random.Random
    created_time: str = field(default_factory=now_iso)
    matched: int = 0  # requests that met `match` while the rule had fires left
    fired: int = 0  # of those, the ones the action was applied to

    @property
    def remaining(self) -> int | None:
        return None if self.next is None else max(self.next - self.fired, 0)

    def applies_to(self, request: Request) -> bool:
        if self.remaining == 0 or not self.match.hits(request):
            return False
        if self.action.kind == "expireToken" and request.job_rid is None:
            return False  # only job tokens expire: the admin keeps control
        return not (self.action.kind == "resetStream" and request.stream is None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.rule_id,
            "match": self.match.to_json(),
            "action": self.action.spec,
            "rate": self.rate,
            "next": self.next,
            "seed": self.seed,
            "remaining": self.remaining,
            "matched": self.matched,
            "fired": self.fired,
            "createdTime": self.created_time,
        }


class FaultStore:
    """The active rules, in the order added; ids are `fault-1`, `fault-2`, ... for this process."""

    def __init__(self) -> None:
        self.rules: dict[str, FaultRule] = {}
        self._counter = 0

    def add(self, body: dict[str, Any]) -> FaultRule:
        unknown = sorted(set(body) - {"match", "action", "rate", "next", "seed"})
        if unknown:
            raise invalid(f"unknown key(s) {', '.join(unknown)}; expected match, action, rate, next, seed")
        rate, next_, seed = _rate(body.get("rate", 1.0)), _count(body.get("next")), body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise invalid("seed must be an integer")
        self._counter += 1
        rule = FaultRule(
            f"fault-{self._counter}", _match(body.get("match")), _action(body.get("action")), rate, next_, seed,
            random.Random(seed),
        )  # fmt: skip
        self.rules[rule.rule_id] = rule
        return rule

    def get(self, rule_id: str) -> FaultRule:
        rule = self.rules.get(rule_id)
        if rule is None:
            raise not_found("FaultRuleNotFound", id=rule_id)
        return rule

    def remove(self, rule_id: str) -> None:
        self.rules.pop(self.get(rule_id).rule_id)

    def clear(self, job_rid: str | None = None) -> int:
        """Remove every rule, or only those targeting `job_rid`; returns how many went."""
        gone = [r.rule_id for r in self.rules.values() if job_rid is None or r.match.job_rid == job_rid]
        for rule_id in gone:
            del self.rules[rule_id]
        return len(gone)

    def fire(self, request: Request) -> list[FaultRule]:
        """The rules that fire for `request`: any pass-through ones, then at most one that decides the answer."""
        fired: list[FaultRule] = []
        for rule in list(self.rules.values()):
            if not rule.applies_to(request):
                continue
            rule.matched += 1
            if rule.rate < 1.0 and rule.rng.random() >= rule.rate:
                continue
            rule.fired += 1
            fired.append(rule)
            if rule.action.kind not in PASS_THROUGH:
                break
        return fired


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise invalid("rate must be a number from 0 to 1")
    return float(value)


def _count(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise invalid("next must be a positive integer (or absent: every matching request)")
    return value


def _match(value: Any) -> Match:
    if value is None:
        value = {}
    if not isinstance(value, dict) or set(value) - {"method", "path", "pathRegex", "jobRid"}:
        raise invalid("match is an object with method, path (a glob), pathRegex and jobRid, each optional")
    for key in ("method", "path", "pathRegex", "jobRid"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise invalid(f"match.{key} must be a string")
    method = value.get("method")
    try:
        regex = None if value.get("pathRegex") is None else re.compile(value["pathRegex"])
    except re.error as exc:
        raise invalid(f"match.pathRegex is not a regular expression: {exc}") from None
    return Match(None if method in (None, "*") else method.upper(), value.get("path"), regex, value.get("jobRid"))


def _action(value: Any) -> Action:
    keys = set(value) & set(_KIND_OF_KEY) if isinstance(value, dict) else set()
    if len(keys) != 1:
        raise invalid(f"action needs exactly one of {', '.join(_KIND_OF_KEY)}")
    [key] = keys
    kind, allowed = _KIND_OF_KEY[key], {key}
    spec = dict(value)
    if kind == "status":
        allowed |= {"retryAfterS", "errorName"}
        status = spec["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise invalid("action.status must be an HTTP error status from 400 to 599")
        retry = spec.get("retryAfterS")
        if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int) or retry < 0):
            raise invalid("action.retryAfterS must be a non-negative integer (seconds)")
        if spec.get("errorName") is not None and not isinstance(spec["errorName"], str):
            raise invalid("action.errorName must be a string")
    elif kind == "latency":
        ms = spec[key]
        if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
            raise invalid("action.latencyMs must be a non-negative number")
    elif kind in _CHOICES:
        if spec[key] not in _CHOICES[kind]:
            raise invalid(f"action.{key} must be one of {', '.join(_CHOICES[kind])}")
    elif spec[key] is not True:
        raise invalid(f"action.{key} must be true")
    if set(spec) - allowed:
        raise invalid(f"action.{key} takes no {', '.join(sorted(set(spec) - allowed))}")
    return Action(kind, spec)
