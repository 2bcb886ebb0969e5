"""A sampler that sends the epoch along with each index, so per-epoch task draws reach every worker.

``SampleRegionTasks`` seeds its draw from (seed, epoch, image index). Dataloader workers hold copies of the
dataset, and persistent workers never see a later ``dataset.set_epoch``; the sampler lives in the main
process and is told the epoch by MMEngine (``DistSamplerSeedHook`` for epoch loops, the infinite iterator for
iteration loops). Yielding ``(epoch, index)`` makes the epoch travel with every index: each worker and each
rank draws the same tasks for the same image in the same epoch, and different ones in the next.
"""
from typing import Iterator, Tuple

from mmengine.dataset import DefaultSampler

from granvit_mm.registry import DATA_SAMPLERS

__all__ = ['EpochTaggedSampler']


@DATA_SAMPLERS.register_module()
class EpochTaggedSampler(DefaultSampler):
    """``DefaultSampler`` (same order, sharding and seeding) that yields ``(epoch, index)`` pairs.

    ``GranDataset.__getitem__`` takes either a plain index (epoch 0, e.g. a val set) or such a pair.
    """

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = int(self.epoch)
        for idx in super().__iter__():
            yield epoch, int(idx)
