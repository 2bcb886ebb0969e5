"""Gran data: the JSONL format, the lazily indexed dataset, task sampling, transforms and GranSynth."""
from .gran_dataset import GranDataset
from .gran_format import BadRecordError, ValidationRules, parse_line, validate_record
from .jsonl_index import MultiShardIndex, ShardIndex, build_index
from .transforms import (
    GranRandomFlip,
    GranSquareResize,
    LoadGranImage,
    PackGranInputs,  # noqa: F401
    SampleRegionTasks)

__all__ = [
    'GranDataset', 'BadRecordError', 'ValidationRules', 'parse_line', 'validate_record', 'ShardIndex',
    'MultiShardIndex', 'build_index', 'LoadGranImage', 'GranRandomFlip', 'GranSquareResize',
    'SampleRegionTasks', 'PackGranInputs'
]
