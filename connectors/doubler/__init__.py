"""The example from Foundry's compute-module docs, done right: batched, committed, validated."""

from .connector import Doubled, Doubler, Number

__all__ = ["Doubled", "Doubler", "Number"]
