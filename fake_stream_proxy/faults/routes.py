"""Fault injection API: make the fake misbehave like a real Foundry (or the network to it) does.

All routes need the admin token. Rules live in memory: a restarted fake has none.

    POST    /_fake/faults            add a rule: body below; answers the rule (with its "id")
    GET     /_fake/faults            {"data": [rule, ...]} in the order added, with counts
    GET     /_fake/faults/{id}       one rule
    DELETE  /_fake/faults            remove all rules (`?jobRid=...`: only those targeting that job) -> {"removed": n}
    DELETE  /_fake/faults/{id}       remove one (204; 404 FaultRuleNotFound)

A rule (POST body; only "action" is required):

    {"match": {"method": "POST",                 # any method when absent or "*"
               "path": "*/publishRecords",       # fnmatch glob on the request path (`*` crosses `/`), or
               "pathRegex": "/streams/[^/]+/",   # a regex searched in the path (both: both must match)
               "jobRid": "ri.foundry.main.job.…"},  # only requests with that job's token (absent: anyone)
     "action": <one of the below>,
     "rate": 0.1,   # probability a matching request is faulted (default 1)
     "next": 5,     # fault only the next 5 matching requests it picks, then stay listed with remaining 0
     "seed": 1}     # seeds the rule's own RNG, so a `rate` picks the same requests every run

Actions (one per rule):

    {"status": 503, "retryAfterS": 1, "errorName": "..."}  answer 400..599 in Foundry's error envelope (errorName
                                    defaults to Default:TooManyRequests / Default:Internal / Default:<Reason>),
                                    with Retry-After when given; the request is not applied
    {"latencyMs": 200}              wait, then serve the request normally
    {"drop": "before"}              close the connection without an answer; the request is not applied
    {"drop": "after"}               apply the request, then close the connection: the client never sees the answer
    {"garbage": "not-json"}         apply the request, answer 200 with an HTML body labelled application/json
    {"garbage": "truncated"}        apply the request, answer 200 with the first half of the real JSON answer
    {"expireToken": true}           answer 401 Default:Unauthorized, as for an expired token; job tokens only
                                    (with "next": N, for N requests; otherwise until the rule is removed)
    {"resetStream": true}           reset the route's stream to a new empty view (as POST .../reset does), then
                                    serve the request; only routes naming a stream ({rid} and {branch})

A rule's JSON adds "id", "remaining" (null without "next"), "matched" (requests it applied to and drew for),
"fired" (how many it faulted) and "createdTime". Rules are tried in the order added: latency and resetStream
ones add up, the first other one that fires decides the answer and later rules are not tried.
`/_fake/*` is never faulted.
"""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import FaultHandlers

ROUTES = """
    POST    /faults          add
    GET     /faults          list
    DELETE  /faults          clear
    GET     /faults/{id}     get
    DELETE  /faults/{id}     remove
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    return [table(("/_fake",), FaultHandlers(ctx.auth, ctx.faults), ROUTES)]
