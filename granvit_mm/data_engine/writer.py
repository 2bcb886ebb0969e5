"""Writer: finished items -> a Gran JSONL shard, its counts, and the run's manifest.

Every record goes through the training reader's own ``validate_record`` (bad regions dropped and counted, as
the converters do), so whatever is written, ``GranDataset`` loads unchanged. A record also carries
``provenance`` (the run, which component made its boxes and captions, any flags): an extra key, which the
reader ignores. Shard counts obey ``inputs == written + sum(rejected)``; the manifest sums the shards and
gives each stage's in/out.
"""
import json
from collections import Counter
from typing import Dict, List, Sequence

from granvit_mm.core.gran_record import (BadRecordError, ValidationRules, dump_record, make_record,
                                         validate_record)

from .item import count, reject
from .shards import atomic_write, output_path, shard_name, stats_path

WRITER_RULES = ValidationRules(bad_region='drop', allow_empty_regions=False)


def record_line(item: dict, run: str, rules: ValidationRules = WRITER_RULES):
    """One JSONL line for a live item, or None after rejecting it with the validator's reason."""
    rec = make_record(item['image'], item['width'], item['height'], item['regions'], item['caption'],
                      item['source'])
    try:
        clean, dropped = validate_record(rec, rules)
    except BadRecordError as err:
        reject(item, 'write', err.reason, err.message)
        return None
    for err in dropped:
        count(item, f'write:regions_dropped:{err.reason}')
    regions = [dict(bbox=b, caption=c, kind=k)
               for b, c, k in zip(clean['bboxes'].tolist(), clean['region_captions'], clean['region_kinds'])]
    out = make_record(clean['image'], clean['width'], clean['height'], regions, clean['caption'],
                      clean['source'])
    out['provenance'] = dict(run=run, **item['provenance'])
    if item['flags']:
        out['provenance']['flags'] = list(item['flags'])
    return dump_record(out)


def write_shard(work_dir: str, index: int, items: List[dict], run: str) -> dict:
    """Write shard ``index`` (items in input order) and then its stats file, both atomically."""
    items = sorted(items, key=lambda it: it['key'])
    lines, regions = [], 0
    for it in items:
        if it['reject'] is None:
            line = record_line(it, run)
            if line is not None:
                lines.append(line + '\n')
                regions += len(json.loads(line)['regions'])
    rejected, counts = Counter(), Counter()
    for it in items:
        if it['reject'] is not None:
            rejected[it['reject']] += 1
        counts.update(it['counts'])
    stats = dict(shard=shard_name(index), inputs=len(items), written=len(lines), regions_written=regions,
                 rejected=dict(sorted(rejected.items())), counts=dict(sorted(counts.items())))
    assert stats['inputs'] == stats['written'] + sum(rejected.values()), stats
    atomic_write(output_path(work_dir, index), ''.join(lines))
    atomic_write(stats_path(work_dir, index), json.dumps(stats, sort_keys=True))
    return stats


def stage_flow(total: int, rejected: Dict[str, int], stage_names: Sequence[str]) -> Dict[str, dict]:
    """Each stage's in/out/rejected from the reject reasons (``'<stage>:<reason>'``) and the stage order."""
    flow, left = {}, total
    for name in stage_names:
        mine = {k.split(':', 1)[1]: v for k, v in rejected.items() if k.split(':', 1)[0] == name}
        out = left - sum(mine.values())
        flow[name] = dict(inputs=left, out=out, rejected=mine)
        left = out
    return flow


def merge_stats(shard_stats: List[dict], stage_names: Sequence[str]) -> dict:
    rejected, counts = Counter(), Counter()
    for s in shard_stats:
        rejected.update(s['rejected'])
        counts.update(s['counts'])
    inputs = sum(s['inputs'] for s in shard_stats)
    written = sum(s['written'] for s in shard_stats)
    return dict(inputs=inputs, written=written, rejected_total=sum(rejected.values()),
                regions_written=sum(s['regions_written'] for s in shard_stats),
                rejected=dict(sorted(rejected.items())), counts=dict(sorted(counts.items())),
                stages=stage_flow(inputs, rejected, ['input'] + list(stage_names) + ['write']))
