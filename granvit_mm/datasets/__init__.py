"""Gran data: the lazily indexed dataset, its epoch-tagging sampler, task sampling and transforms.

The record schema is a shared contract in ``granvit_mm.core.gran_record``; GranSynth is in ``granvit_mm.toy``.
"""
from .epoch_sampler import EpochTaggedSampler
from .gran_dataset import GranDataset
from .jsonl_index import MultiShardIndex, ShardIndex, build_index
from .transforms import GranRandomFlip, GranSquareResize, LoadGranImage, PackGranInputs, SampleRegionTasks

__all__ = [
    'GranDataset', 'EpochTaggedSampler', 'ShardIndex', 'MultiShardIndex', 'build_index', 'LoadGranImage',
    'GranRandomFlip', 'GranSquareResize', 'SampleRegionTasks', 'PackGranInputs'
]
