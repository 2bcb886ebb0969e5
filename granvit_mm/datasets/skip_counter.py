"""Counting and logging of skipped bad records, so a long run neither crashes nor hides bad data.

Each dataloader worker is its own process with its own counter; each logs the first ``verbose_first``
skips in full (shard, line, field) and then one summary line with per-reason counts every
``summary_every`` skips.
"""
import logging
from collections import Counter
from typing import Dict

from mmengine.logging import print_log


class SkipCounter:
    """Per-reason counts of skipped records and dropped regions of one process."""

    def __init__(self, verbose_first: int = 20, summary_every: int = 1000, name: str = 'GranDataset') -> None:
        self.verbose_first = verbose_first
        self.summary_every = summary_every
        self.name = name
        self.records: Counter = Counter()
        self.regions: Counter = Counter()

    @property
    def total(self) -> int:
        return sum(self.records.values())

    def skip(self, err: Exception) -> None:
        """Count a skipped record and log it (in full at first, then as periodic summaries)."""
        self.records[getattr(err, 'reason', type(err).__name__)] += 1
        n = self.total
        if n <= self.verbose_first:
            print_log(f'{self.name}: skipped ({n}): {err}', logger='current', level=logging.WARNING)
        if n % self.summary_every == 0 or n == self.verbose_first:
            print_log(self.summary(), logger='current', level=logging.WARNING)

    def drop_region(self, err: Exception) -> None:
        """Count a region dropped from an otherwise good record (``bad_region='drop'``)."""
        self.regions[getattr(err, 'reason', type(err).__name__)] += 1
        if sum(self.regions.values()) <= self.verbose_first:
            print_log(f'{self.name}: dropped region: {err}', logger='current', level=logging.WARNING)

    def as_dict(self) -> Dict[str, Dict[str, int]]:
        return dict(records=dict(self.records), regions=dict(self.regions))

    def summary(self) -> str:
        recs = ', '.join(f'{k}={v}' for k, v in self.records.most_common()) or 'none'
        regs = ', '.join(f'{k}={v}' for k, v in self.regions.most_common()) or 'none'
        return (f'{self.name}: {self.total} bad records skipped in this process so far ({recs}); '
                f'regions dropped: {regs}')
