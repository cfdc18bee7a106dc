"""Finding the record a store refused in a batch: halve the batch until it is alone."""

from __future__ import annotations


class RejectedSearch:
    """The size of a writer's next batch, while a batch the store refused for its data
    (``RecordRejected``) is searched for the record at fault.

    A refused batch of more than one record is retried as its first half, then the first
    half of that, and so on: the records before the bad one are written, in order, on the
    way, and the bad one ends up alone in a batch of one, which the writer drops (and
    logs, and counts). Each batch written whole at the current size doubles the size
    again, up to ``full``. A bad record costs about log2(full) extra writes, where trying
    the records one by one would cost one write each.

    Used by the decision writer and the AMI call-record writer; only the size is shared,
    each writer knows where its batch comes from (a deque, a journal) and what dropping
    a record means there.
    """

    __slots__ = ("full", "size")

    def __init__(self, full: int) -> None:
        self.full = max(1, full)
        self.size = self.full

    def refused(self, batch: int) -> bool:
        """A batch of ``batch`` records was refused. True when it is the record at fault
        (a batch of one: drop it); else False, and the next batch is the first half."""
        if batch > 1:
            self.size = max(1, min(self.full, batch // 2))
            return False
        return True

    def written(self, batch: int) -> None:
        """A batch of ``batch`` records was written whole."""
        if self.size < self.full and batch >= self.size:
            self.size = min(self.full, self.size * 2)
