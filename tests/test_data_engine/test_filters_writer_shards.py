"""The data engine's filter stage, writer and shard files one by one (test_engine_run.py runs them inside real
engine runs): the rules at their thresholds, the exact counts, stats and files."""
import json
import os
import os.path as osp

import pytest

from granvit_mm.data_engine.filters import PaperFilters
from granvit_mm.data_engine.item import make_item, reject
from granvit_mm.data_engine.shards import (atomic_write, entries_path, is_done, output_path, pending_shards,
                                           plan_shards, read_entries, shard_name, stats_path)
from granvit_mm.data_engine.writer import merge_stats, record_line, stage_flow, write_shard
from granvit_mm.datasets.converters.filters import PaperFilter


def _rec(w, h, boxes, kind='object'):
    return dict(width=w, height=h, regions=[dict(bbox=b, caption='c', kind=kind) for b in boxes])


def test_paper_filter_thresholds_are_strict_where_the_paper_says_so():
    f = PaperFilter(min_short_side=10, min_aspect=0.5, max_aspect=2.0, min_box_area=4)
    assert f(_rec(10, 20, [[0, 0, 4, 4]])) is None  # shorter side must be > 10
    assert f(_rec(11, 22, [[0, 0, 4, 4]])) is not None  # aspect 0.5: inside [0.5, 2]
    assert f(_rec(22, 11, [[0, 0, 4, 4]])) is not None  # aspect 2: inside
    assert f(_rec(11, 23, [[0, 0, 4, 4]])) is None and f(_rec(23, 11, [[0, 0, 4, 4]])) is None
    boxes = [[0, 0, 2, 2], [0, 0, 3, 2], [0, 0, 2, 4], [0, 0, 2, 5], [0, 0, 4, 0], [1, 1, 4, 4]]
    kept = f(_rec(20, 20, boxes))
    # area 4 (not > 4), area 6 (aspect 1.5: kept), aspect 0.5 area 8 (kept), aspect 0.4, height 0 (no
    # division by zero: a flat box fails the aspect rule), area 9
    assert [r['bbox'] for r in kept['regions']] == [[0, 0, 3, 2], [0, 0, 2, 4], [1, 1, 4, 4]]
    assert kept['width'] == 20 and kept['height'] == 20
    # boxes away from the origin: the sides are differences of the coordinates
    kept = f(_rec(20, 20, [[2, 0, 5, 3], [0, 2, 3, 5], [1, 0, 3, 2], [0, 1, 2, 3]]))
    assert [r['bbox'] for r in kept['regions']] == [[2, 0, 5, 3], [0, 2, 3, 5]]  # area 4 is not > 4
    flat = PaperFilter(min_short_side=0, min_box_area=0)
    assert flat(_rec(3, 1, [[0, 0, 1, 1]]))['regions'] == _rec(3, 1, [[0, 0, 1, 1]])['regions']  # 1 px high
    assert dict(f.stats) == {'images_in': 7, 'boxes_in': 15, 'images_removed:short_side': 1,
                             'images_removed:image_aspect': 2, 'images_out': 4, 'boxes_out': 7,
                             'boxes_removed:box_area': 3, 'boxes_removed:box_aspect': 2}
    assert f.report() == ('images: 7 in, 4 out; boxes: 15 in, 7 out\n'
                          '  boxes_removed:box_area: 3\n  boxes_removed:box_aspect: 2\n'
                          '  images_removed:image_aspect: 2\n  images_removed:short_side: 1')


def test_paper_filter_defaults_and_kinds():
    f = PaperFilter()
    assert (f.min_short_side, f.min_aspect, f.max_aspect, f.min_box_area, tuple(f.box_kinds)) == \
        (448, 1 / 3, 3.0, 10000, ('object', 'text'))
    assert f(_rec(449, 449, [[0, 0, 100, 100]])) is None  # area 10000 is not > 100^2
    assert f(_rec(449, 449, [[0, 0, 100, 101]])) is not None
    assert f(_rec(449, 449, [[0, 0, 10, 10]], kind='text')) is None  # text boxes are filtered too
    objects_only = PaperFilter(box_kinds=('object', ))
    small_text = _rec(449, 449, [[0, 0, 10, 10]], kind='text')
    assert objects_only(small_text)['regions'] == small_text['regions']
    no_kind = dict(width=449, height=449, regions=[dict(bbox=[0, 0, 10, 10], caption='c')])
    assert objects_only(no_kind) is None  # a region without a kind is an object
    assert f.stats['images_removed:no_boxes'] == 2
    assert f(_rec(448, 900, [])) is None and f(_rec(900, 100, [])) is None
    assert f.stats['images_removed:short_side'] == 2  # counted, not merely flagged


def test_paper_filter_line():
    f = PaperFilter(min_short_side=10, min_box_area=1)
    line = json.dumps(dict(image='a.jpg', width=20, height=20, source='s', caption='g',
                           regions=[dict(bbox=[0, 0, 5, 5], caption='box', kind='text'),
                                    dict(bbox=[0, 0, 'x', 5], caption='bad')]))
    assert f.filter_line(line.encode()) == dict(image='a.jpg', width=20, height=20, source='s', caption='g',
                                                regions=[dict(bbox=[0.0, 0.0, 5.0, 5.0], caption='box',
                                                              kind='text')])
    assert f.filter_line(b'{"image": "a.jpg"') is None and f.filter_line(b'{"image": ""}') is None
    assert f.filter_line(b'not json') is None
    assert f.stats['malformed:json'] == 2 and f.stats['malformed:missing_field'] == 1


def _item(key, w, h, boxes):
    regions = [dict(bbox=b, caption='c', kind='object') for b in boxes]
    return make_item(key, f'/in/{key}.jpg', f'{key}.jpg', 'web', regions, w, h)


def test_filter_stage_rejects_and_counts_per_item():
    stage = PaperFilters(min_short_side=10, min_box_area=4, box_kinds=['object'])
    assert stage.provenance() == dict(min_short_side=10, min_aspect=1 / 3, max_aspect=3.0, min_box_area=4,
                                      box_kinds=['object'])
    assert PaperFilters().provenance() == dict(min_short_side=448, min_aspect=1 / 3, max_aspect=3.0,
                                               min_box_area=10000, box_kinds=['object', 'text'])
    small = _item(0, 8, 20, [[0, 0, 4, 4]])
    mixed = _item(1, 20, 20, [[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 5, 5], [0, 0, 9, 1]])
    empty = _item(2, 20, 20, [[0, 0, 1, 1]])
    stage.process([small, mixed, empty])
    assert (small['reject'], small['detail'], small['regions']) == \
        ('filter:short_side', '8x20, 1 boxes', [dict(bbox=[0, 0, 4, 4], caption='c', kind='object')])
    assert mixed['reject'] is None and [r['bbox'] for r in mixed['regions']] == [[0, 0, 5, 5]]
    assert mixed['counts'] == {'filter:boxes_removed:box_area': 2, 'filter:boxes_removed:box_aspect': 1}
    assert (empty['reject'], empty['detail'], empty['counts']) == \
        ('filter:no_boxes', '20x20, 1 boxes', {'filter:boxes_removed:box_area': 1})
    assert small['counts'] == {}


def test_record_line_validates_and_keeps_provenance():
    it = _item(0, 20, 10, [[0, 0, 5, 5], [0, 0, 50, 5], [1.234, 2, 3, 4]])
    it['regions'][2]['kind'] = 'text'
    it.update(caption='a scene', provenance=dict(boxes='given'), flags=['first_of_3_frames'])
    line = record_line(it, 'run1')
    assert json.loads(line) == dict(
        image='0.jpg', width=20, height=10, source='web', caption='a scene',
        regions=[dict(bbox=[0.0, 0.0, 5.0, 5.0], caption='c', kind='object'),
                 dict(bbox=[1.23, 2.0, 3.0, 4.0], caption='c', kind='text')],
        provenance=dict(run='run1', boxes='given', flags=['first_of_3_frames']))
    assert it['counts'] == {'write:regions_dropped:bbox_out_of_image': 1} and it['reject'] is None
    plain = _item(1, 20, 10, [[0, 0, 5, 5]])
    assert 'flags' not in json.loads(record_line(plain, 'run1'))['provenance']
    none_left = _item(2, 20, 10, [[0, 0, 50, 5]])
    assert record_line(none_left, 'run1') is None
    assert (none_left['reject'], none_left['detail']) == ('write:no_regions', 'all 1 regions were bad')


def test_write_shard_in_input_order_with_stats(tmp_path):
    wd = str(tmp_path)
    items = [_item(k, 20, 10, [[0, 0, 5, 5]] * (k + 1)) for k in (3, 1, 2, 0)]
    reject(items[2], 'ingest', 'image_empty')  # key 2
    items[1]['regions'] = [dict(bbox=[0, 0, 50, 5], caption='c', kind='object')]  # key 1: the writer's reject
    items[0]['counts'] = {'filter:boxes_removed:box_area': 2}
    items[3]['counts'] = {'filter:boxes_removed:box_area': 1, 'caption:cut': 1}
    stats = write_shard(wd, 3, items, 'r')
    assert stats == dict(shard='part-00003', inputs=4, written=2, regions_written=1 + 4,
                         rejected={'ingest:image_empty': 1, 'write:no_regions': 1},
                         counts={'caption:cut': 1, 'filter:boxes_removed:box_area': 3})
    lines = open(output_path(wd, 3), encoding='utf-8').read().splitlines()
    assert [json.loads(ln)['image'] for ln in lines] == ['0.jpg', '3.jpg']
    assert json.load(open(stats_path(wd, 3))) == stats and is_done(wd, 3) and not is_done(wd, 2)
    assert list(json.load(open(stats_path(wd, 3)))) == sorted(stats)  # canonical bytes: keys sorted
    assert sorted(os.listdir(tmp_path)) == ['gran', 'stats']
    assert os.listdir(tmp_path / 'gran') == ['part-00003.jsonl']


def test_stage_flow_and_merged_manifest():
    # a reason may hold a colon: only the first one ends the stage's name
    flow = stage_flow(10, {'ingest:image_empty': 2, 'ingest:http:404': 1}, ['input', 'ingest'])
    assert flow['ingest'] == dict(inputs=10, out=7, rejected={'image_empty': 2, 'http:404': 1})
    flow = stage_flow(10, {'ingest:image_empty': 2, 'filter:short_side': 1, 'filter:no_boxes': 3,
                           'write:no_regions': 1}, ['input', 'ingest', 'filter', 'write'])
    assert flow == {'input': dict(inputs=10, out=10, rejected={}),
                    'ingest': dict(inputs=10, out=8, rejected={'image_empty': 2}),
                    'filter': dict(inputs=8, out=4, rejected={'short_side': 1, 'no_boxes': 3}),
                    'write': dict(inputs=4, out=3, rejected={'no_regions': 1})}
    a = dict(inputs=4, written=2, regions_written=5, rejected={'ingest:image_empty': 2}, counts={'x': 1})
    b = dict(inputs=3, written=1, regions_written=1, rejected={'filter:no_boxes': 1, 'ingest:image_empty': 1},
             counts={'x': 2, 'y': 1})
    m = merge_stats([a, b], ['ingest', 'filter'])
    assert m == dict(inputs=7, written=3, rejected_total=4, regions_written=6,
                     rejected={'filter:no_boxes': 1, 'ingest:image_empty': 3}, counts={'x': 3, 'y': 1},
                     stages={'input': dict(inputs=7, out=7, rejected={}),
                             'ingest': dict(inputs=7, out=4, rejected={'image_empty': 3}),
                             'filter': dict(inputs=4, out=3, rejected={'no_boxes': 1}),
                             'write': dict(inputs=3, out=3, rejected={})})
    assert list(m['rejected']) == sorted(m['rejected']) and list(m['counts']) == ['x', 'y']


def test_atomic_write_and_names(tmp_path):
    path = str(tmp_path / 'new' / 'deeper' / 'f.json')
    atomic_write(path, 'é\n')
    assert open(path, 'rb').read() == 'é\n'.encode('utf-8') and os.listdir(osp.dirname(path)) == ['f.json']
    atomic_write(path, 'second')
    assert open(path).read() == 'second' and os.listdir(osp.dirname(path)) == ['f.json']
    assert shard_name(7) == 'part-00007' and shard_name(123456) == 'part-123456'
    assert entries_path('/w', 2) == '/w/plan/part-00002.jsonl'
    assert output_path('/w', 2) == '/w/gran/part-00002.jsonl'
    assert stats_path('/w', 2) == '/w/stats/part-00002.json'


def test_plan_cuts_shards_refuses_duplicates_within_one_and_is_reused(tmp_path):
    wd = str(tmp_path)
    entries = [dict(path=p) for p in ['a', 'b', 'a', 'c', 'a', 'a']] + [dict(bad='bad_record_json')]
    meta = dict(input='list.txt', shard_size=3)
    plan = plan_shards(iter(entries), wd, 3, meta)
    assert plan == dict(meta=meta, num_inputs=7, shard_sizes=[3, 3, 1])
    dup = dict(bad='duplicate_input', detail='a appears earlier in this shard')
    assert read_entries(wd, 0) == [dict(path='a'), dict(path='b'), dup]
    # a new shard forgets the paths seen: duplicates across shards are not detected
    assert read_entries(wd, 1) == [dict(path='c'), dict(path='a'), dup]
    assert read_entries(wd, 2) == [dict(bad='bad_record_json')]
    assert json.load(open(osp.join(wd, 'plan', 'plan.json'))) == plan
    assert plan_shards(iter([]), wd, 3, dict(meta)) == plan  # the same run: the plan is reused
    with pytest.raises(ValueError) as err:
        plan_shards(iter([]), wd, 2, dict(input='list.txt', shard_size=2))
    assert str(err.value) == (f"{wd} holds a run of another input or shard size ({meta} vs "
                              "{'input': 'list.txt', 'shard_size': 2}); use another --work-dir")
    assert plan_shards(iter([]), str(tmp_path / 'empty'), 3, meta) == \
        dict(meta=meta, num_inputs=0, shard_sizes=[])
    atomic_write(stats_path(wd, 1), '{}')
    assert pending_shards(wd, plan) == [0, 2] and pending_shards(wd, plan, only=[1, 2]) == [2]


def test_shard_files_are_utf8_whatever_the_locale(tmp_path):
    import locale
    wd = str(tmp_path)
    meta = dict(input='liste-é.txt', shard_size=2)
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, 'C')  # open() without an encoding now reads and writes ASCII only
    try:
        plan = plan_shards(iter([dict(path='/images/été.jpg')]), wd, 2, meta)
        assert read_entries(wd, 0) == [dict(path='/images/été.jpg')]
        assert plan_shards(iter([]), wd, 2, dict(meta)) == plan
    finally:
        locale.setlocale(locale.LC_CTYPE, old)
    assert open(entries_path(wd, 0), encoding='utf-8').read() == '{"path":"/images/été.jpg"}\n'
