"""Fleet disruption: which live instances leave the fleet, which are replaced, in order.

Owns: the answer to "should this instance go" for scale-in (misfits first, then the
newest: the oldest have the warmest caches and the longest-placed tasks) and for
instances that no longer fit the fleet (an instance cannot change type, image or market
in place, so it is replaced, oldest first: the order a rolling replace takes).
Must not: size the fleet (`fleets`), or build actions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.core.diffs import fits
from controller.core.states import DesiredFleet, LiveInstance


@dataclass(frozen=True, kw_only=True)
class Disruption:
    remove: tuple[LiveInstance, ...]  # terminated for scale-in, in this order
    replace: tuple[LiveInstance, ...]  # replaced by a fitting instance, in this order
    kept: int  # instances that stay in the fleet (as they are, or replaced)


def newest_first(instances: Iterable[LiveInstance]) -> list[LiveInstance]:
    return sorted(instances, key=lambda i: (i.launch_time, i.instance_id), reverse=True)


def disruption(fleet: DesiredFleet, alive: Iterable[LiveInstance]) -> Disruption:
    """`alive`: the fleet's managed instances that are pending or running."""
    instances = list(alive)
    misfits = newest_first(i for i in instances if not fits(i, fleet))
    fitting = newest_first(i for i in instances if fits(i, fleet))
    # Scale in by dropping misfits first (they would be replaced anyway), then the newest.
    excess = max(len(instances) - fleet.count, 0)
    remove = (misfits + fitting)[:excess]
    replace = [i for i in reversed(misfits) if i not in remove]
    return Disruption(
        remove=tuple(remove), replace=tuple(replace), kept=len(instances) - len(remove)
    )
