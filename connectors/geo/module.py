"""An example function-mode module: typed geo functions Foundry applications call through Contour.

`distance` is a plain request/response function, `legs` streams one result per leg of a route, and
`midpoint` is a plain `def` (run in a thread pool, as CPU-bound or blocking code should be).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

from pydantic import BaseModel, Field

from framework import FunctionModule, JobContext, function

EARTH_RADIUS_KM = 6371.0088


class Point(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Pair(BaseModel):
    a: Point
    b: Point


class Distance(BaseModel):
    km: float


class Route(BaseModel):
    points: list[Point] = Field(min_length=2)


class Leg(BaseModel):
    index: int
    km: float


def haversine_km(a: Point, b: Point) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


class GeoFunctions(FunctionModule):
    name = "geo"

    @function
    async def distance(self, ctx: JobContext, pair: Pair) -> Distance:
        ctx.log.info("distance", user_id=ctx.user_id)
        return Distance(km=round(haversine_km(pair.a, pair.b), 3))

    @function
    async def legs(self, route: Route) -> AsyncIterator[Leg]:
        for i, (a, b) in enumerate(zip(route.points, route.points[1:], strict=False)):
            yield Leg(index=i, km=round(haversine_km(a, b), 3))

    @function
    def midpoint(self, a: Point, b: Point) -> Point:
        return Point(lat=(a.lat + b.lat) / 2, lon=(a.lon + b.lon) / 2)
