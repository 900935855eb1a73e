"""Work that every rank needs and one rank does."""
from typing import Callable, TypeVar

from mmengine.dist import broadcast_object_list, get_dist_info

T = TypeVar('T')


def from_rank_zero(compute: Callable[[], T]) -> T:
    """Run ``compute()`` on rank 0 and give its result to every rank.

    For work whose result all ranks need but that one process should do,
    such as counting a dataset and writing the cache. The other ranks wait
    for rank 0's result; if ``compute`` raised there, every rank raises
    rank 0's error instead of waiting forever. Without a process group it
    just returns ``compute()``. The result travels pickled through
    MMEngine's ``broadcast_object_list``, so it must be picklable.

    Args:
        compute (Callable[[], T]): The work, called on rank 0 only.

    Returns:
        T: What ``compute()`` returned on rank 0.
    """
    outcome = [None]
    if get_dist_info()[0] == 0:
        try:
            outcome = [(True, compute())]
        except Exception as error:
            outcome = [(False, error)]
    broadcast_object_list(outcome)
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value
