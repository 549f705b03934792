"""`none`: the train split as is, the baseline every defense is compared with."""

from __future__ import annotations

from piimem.defense.base import Defense

DEFENSE = Defense("none", rewrites_text=False)
