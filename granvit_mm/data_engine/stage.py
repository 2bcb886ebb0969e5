"""The stage interface: a callable over a batch of items, built from a config dict by DATA_ENGINE_STAGES.

A stage sees only the live items of a batch (refused ones pass through untouched), changes them in place and
may refuse some with :func:`granvit_mm.data_engine.item.reject`. The same objects run in the local loop, in
process-pool workers and as Ray Data actors (``map_batches``), so a stage must not depend on batch size or
order for its result beyond what its model does.
"""
from typing import List

from mmengine.registry import DefaultScope

from granvit_mm.registry import DATA_ENGINE_STAGES

from .item import live


def build_component(cfg: dict):
    """Build a stage or backend in the ``granvit`` scope: model libraries move MMEngine's default scope
    (mmdet's DetInferencer sets ``mmdet``), which must not decide how the next component's models resolve."""
    with DefaultScope.overwrite_default_scope('granvit'):
        return DATA_ENGINE_STAGES.build(cfg)


class Stage:
    """Base class. ``name`` prefixes the stage's reject reasons in the manifest."""
    name = 'stage'

    def __call__(self, items: List[dict]) -> List[dict]:
        todo = [it for it in live(items) if self.wants(it)]
        if todo:
            self.process(todo)
        return items

    def wants(self, item: dict) -> bool:
        """Whether this stage has work on ``item`` (e.g. OCR only for document sources)."""
        return True

    def process(self, items: List[dict]) -> None:
        raise NotImplementedError

    def provenance(self) -> dict:
        """What the manifest records about this stage (model, thresholds)."""
        return {}
