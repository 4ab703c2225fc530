"""The fake spaces strategy tests run on: they ship in `ranksearch.testing.spaces`.

(A plain module rather than a conftest: tests elsewhere import the root conftest by name, which
a second one would shadow.)
"""

from __future__ import annotations

from ranksearch.testing.spaces import FakeLayer, FakeSpace, lenet5, objective, small, tiny

__all__ = ["FakeLayer", "FakeSpace", "lenet5", "objective", "small", "tiny"]
