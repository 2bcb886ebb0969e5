"""The paper's Gran-29M filters as an engine stage (the rules and their counts are
``datasets/converters/filters.PaperFilter``'s; this stage only maps its verdicts onto items).

It runs after the boxes (detector, OCR or given) and before captioning, so the captioner never spends time on
an image or a box the filters would drop. A removed image becomes a reject ``filter:<rule>``; removed boxes
are counted per rule in the manifest.
"""
from typing import List, Sequence

from granvit_mm.datasets.converters.filters import PaperFilter
from granvit_mm.registry import DATA_ENGINE_STAGES

from .item import count, reject
from .stage import Stage


@DATA_ENGINE_STAGES.register_module()
class PaperFilters(Stage):
    """Shorter side > ``min_short_side``; image and box aspect in [``min_aspect``, ``max_aspect``]; box area
    > ``min_box_area``; at least one box. Paper values are the defaults; box rules apply to ``box_kinds``."""
    name = 'filter'

    def __init__(self, min_short_side: float = 448, min_aspect: float = 1 / 3, max_aspect: float = 3.0,
                 min_box_area: float = 100**2, box_kinds: Sequence[str] = ('object', 'text')) -> None:
        self.rules = PaperFilter(min_short_side, min_aspect, max_aspect, min_box_area, tuple(box_kinds))

    def provenance(self) -> dict:
        r = self.rules
        return dict(min_short_side=r.min_short_side, min_aspect=r.min_aspect, max_aspect=r.max_aspect,
                    min_box_area=r.min_box_area, box_kinds=list(r.box_kinds))

    def process(self, items: List[dict]) -> None:
        stats = self.rules.stats
        for it in items:
            before = dict(stats)
            kept = self.rules(dict(width=it['width'], height=it['height'], regions=it['regions']))
            for key, n in stats.items():
                gained = n - before.get(key, 0)
                if key.startswith('boxes_removed:') and gained:
                    count(it, 'filter:' + key, gained)
                elif key.startswith('images_removed:') and gained:
                    rule = key.split(':', 1)[1]
                    reject(it, self.name, rule, f'{it["width"]}x{it["height"]}, {len(it["regions"])} boxes')
            if kept is not None:
                it['regions'] = kept['regions']
