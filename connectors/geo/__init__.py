"""Geo functions: an example function-mode compute module (see the README's "Function mode" section)."""

from .module import Distance, GeoFunctions, Leg, Pair, Point, Route

__all__ = ["Distance", "GeoFunctions", "Leg", "Pair", "Point", "Route"]
