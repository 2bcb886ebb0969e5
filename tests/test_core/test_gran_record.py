"""The Gran record's rules at their edges, and the exact words of each error (the message is what a user with
a bad shard reads; tests/test_datasets/test_gran_format.py checks the reasons and fields)."""
import pickle

import numpy as np
import pytest

from granvit_mm.core.gran_record import (REGION_KINDS, BadRecordError, ValidationRules, dump_record,
                                         make_record, parse_line, validate_record)


def rec(regions=None, **kw):
    out = dict(image='a.png', width=40, height=30, source='test', caption='a red image',
               regions=[dict(bbox=[2, 3, 20, 25], caption='a red square')] if regions is None else regions)
    out.update(kw)
    return out


def region(bbox, caption='x', **kw):
    return dict(bbox=bbox, caption=caption, **kw)


def error(record, **rules):
    with pytest.raises(BadRecordError) as e:
        validate_record(record, ValidationRules(**rules))
    return e.value


def test_error_text_names_shard_line_field_and_reason():
    err = BadRecordError('bbox_nan', 'nan here', 's.jsonl', 3, 'regions[0].bbox')
    assert str(err) == "bad Gran record at s.jsonl:3 field 'regions[0].bbox': nan here [bbox_nan]"
    assert str(BadRecordError('json', 'broken')) == 'bad Gran record at ?: broken [json]'
    assert str(BadRecordError('json', 'broken', 's.jsonl', 0)) == \
        'bad Gran record at s.jsonl:0: broken [json]'
    err = BadRecordError('json', 'broken', field='image')
    assert (err.reason, err.message, err.shard, err.line, err.field) == ('json', 'broken', '?', -1, 'image')
    assert err.locate('t.jsonl', 5) is err
    assert (err.shard, err.line) == ('t.jsonl', 5)
    assert str(err) == err.args[0] == "bad Gran record at t.jsonl:5 field 'image': broken [json]"
    assert err.args == (str(err), )
    assert isinstance(err, ValueError)


def test_error_pickles_with_every_field():
    err = BadRecordError('bbox_nan', 'nan', 's.jsonl', 3, 'regions[0].bbox')
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is BadRecordError
    assert (back.reason, back.message, back.shard, back.line, back.field) == \
        ('bbox_nan', 'nan', 's.jsonl', 3, 'regions[0].bbox')
    assert str(back) == str(err)


def test_rules_defaults_and_bad_region_option():
    rules = ValidationRules()
    assert (rules.clip_tolerance, rules.min_box_size, rules.max_caption_chars, rules.max_region_caption_chars,
            rules.max_line_bytes, rules.allow_empty_regions, rules.bad_region) == \
        (2.0, 1.0, 4000, 300, 1 << 20, False, 'record')
    assert ValidationRules(bad_region='drop').bad_region == 'drop'
    with pytest.raises(ValueError) as e:
        ValidationRules(bad_region='skip')
    assert str(e.value) == "bad_region must be 'record' or 'drop', got 'skip'"
    assert REGION_KINDS == ('object', 'text')


def test_parse_line():
    assert parse_line(b'{"a": 1}') == {'a': 1}
    assert parse_line(b'\xef\xbb\xbf{"a": 1}\n') == {'a': 1}
    assert parse_line('{"a": "é"}'.encode()) == {'a': 'é'}
    with pytest.raises(BadRecordError) as e:
        parse_line(b'{"a": ')
    assert e.value.reason == 'json' and e.value.message.startswith('malformed JSON (Expecting value')
    with pytest.raises(BadRecordError) as e:
        parse_line(b'{"a": "\xff"}')
    assert e.value.reason == 'json' and e.value.message.startswith('malformed JSON (')
    with pytest.raises(BadRecordError) as e:
        parse_line(b'[1, 2]')
    assert (e.value.reason, e.value.message) == ('json', 'a line must hold a JSON object, got list')


def test_clean_record_fields():
    clean, dropped = validate_record(rec(regions=[region([2, 3, 20, 25], ' a cube ', kind='text'),
                                                  region((0, 0, 40, 30), 'all')]))
    assert dropped == []
    assert list(clean) == ['image', 'width', 'height', 'source', 'caption', 'bboxes', 'region_captions',
                           'region_kinds']
    assert (clean['image'], clean['width'], clean['height'], clean['source'], clean['caption']) == \
        ('a.png', 40, 30, 'test', 'a red image')
    assert clean['bboxes'].dtype == np.float32
    assert clean['bboxes'].tolist() == [[2, 3, 20, 25], [0, 0, 40, 30]]
    assert clean['region_captions'] == ['a cube', 'all'] and clean['region_kinds'] == ['text', 'object']
    assert validate_record(rec(source=None))[0]['source'] == ''
    assert validate_record(rec(source=7))[0]['source'] == '7'
    no_source = rec()
    del no_source['source']
    assert validate_record(no_source)[0]['source'] == ''
    assert validate_record(rec(caption=None))[0]['caption'] is None
    assert validate_record(rec(caption='   '))[0]['caption'] is None  # an empty image caption is no caption
    assert validate_record(rec(width=40.0, height=30.0))[0]['width'] == 40
    assert type(validate_record(rec(width=40.0))[0]['width']) is int


@pytest.mark.parametrize('key', ['width', 'height'])
@pytest.mark.parametrize('val', [0, -3, 12.5, True, '40', None, float('inf'), float('nan')])
def test_sizes_must_be_positive_integers(key, val):
    err = error(rec(**{key: val}))
    assert (err.reason, err.field) == (f'bad_{key}', key)
    assert err.message == f'{key} must be a positive integer, got {val!r}'


def test_size_one_is_fine():
    clean, _ = validate_record(rec(width=1, height=1, regions=[region([0, 0, 1, 1])]))
    assert (clean['width'], clean['height']) == (1, 1)


def test_image_must_be_a_path():
    for bad in ['', '  ', None, 3]:
        err = error(rec(image=bad))
        assert (err.reason, err.field) == ('missing_field', 'image')
        assert err.message == f'image must be a non-empty path string, got {bad!r}'


def test_captions():
    limit = 'w' * 300
    clean, _ = validate_record(rec(regions=[region([1, 1, 9, 9], '  ' + limit + '  ')]))
    assert clean['region_captions'] == [limit]  # the limit counts the stripped caption
    err = error(rec(regions=[region([1, 1, 9, 9], limit + 'w')]))
    assert (err.reason, err.field) == ('caption_too_long', 'regions[0].caption')
    assert err.message == 'caption has 301 characters (limit 300)'
    err = error(rec(caption='w' * 11), max_caption_chars=10)
    assert (err.reason, err.field, err.message) == ('caption_too_long', 'caption',
                                                    'caption has 11 characters (limit 10)')
    clean, _ = validate_record(rec(caption='w' * 10), ValidationRules(max_caption_chars=10))
    assert clean['caption'] == 'w' * 10
    err = error(rec(regions=[region([1, 1, 9, 9], ' \n')]))
    assert (err.reason, err.field, err.message) == ('empty_caption', 'regions[0].caption', 'caption is empty')
    err = error(rec(regions=[dict(bbox=[1, 1, 9, 9])]))  # a region's caption is required
    assert (err.reason, err.field, err.message) == ('bad_caption', 'regions[0].caption',
                                                    'caption must be a string, got NoneType')
    err = error(rec(caption=5))
    assert (err.reason, err.field, err.message) == ('bad_caption', 'caption',
                                                    'caption must be a string, got int')


OUTSIDE = 'lies more than 2 px outside the 40x30 image'


@pytest.mark.parametrize('bbox, why, message', [
    ([1, 2, 3], 'bbox_format', 'bbox must be 4 numbers [x1, y1, x2, y2], got [1, 2, 3]'),
    ([1, 2, 3, 4, 5], 'bbox_format', 'bbox must be 4 numbers [x1, y1, x2, y2], got [1, 2, 3, 4, 5]'),
    ({'x': 1}, 'bbox_format', "bbox must be 4 numbers [x1, y1, x2, y2], got {'x': 1}"),
    ([1, 2, True, 4], 'bbox_format', 'bbox must hold numbers, got [1, 2, True, 4]'),
    ([1, 2, None, 4], 'bbox_format', 'bbox must hold numbers, got [1, 2, None, 4]'),
    ([float('nan'), 2, 3, 4], 'bbox_nan', 'bbox has a NaN or infinite value: [nan, 2, 3, 4]'),
    ([1, float('-inf'), 3, 4], 'bbox_nan', 'bbox has a NaN or infinite value: [1, -inf, 3, 4]'),
    ([1, 2, 3, float('nan')], 'bbox_nan', 'bbox has a NaN or infinite value: [1, 2, 3, nan]'),
    ([5, 2, 4, 9], 'bbox_inverted', 'bbox has x2 < x1 or y2 < y1 (expected xyxy): [5, 2, 4, 9]'),
    ([1, 9, 5, 8], 'bbox_inverted', 'bbox has x2 < x1 or y2 < y1 (expected xyxy): [1, 9, 5, 8]'),
    ([-2.5, 0, 5, 5], 'bbox_out_of_image', 'bbox [-2.5, 0, 5, 5] ' + OUTSIDE),
    ([0, -2.5, 5, 5], 'bbox_out_of_image', 'bbox [0, -2.5, 5, 5] ' + OUTSIDE),
    ([0, 0, 42.5, 5], 'bbox_out_of_image', 'bbox [0, 0, 42.5, 5] ' + OUTSIDE),
    ([0, 0, 5, 32.5], 'bbox_out_of_image', 'bbox [0, 0, 5, 32.5] ' + OUTSIDE),
    ([5, 5, 5.5, 9], 'bbox_degenerate', 'bbox [5, 5, 5.5, 9] is narrower or shorter than 1 px (zero-area)'),
    ([5, 5, 9, 5.5], 'bbox_degenerate', 'bbox [5, 5, 9, 5.5] is narrower or shorter than 1 px (zero-area)'),
    ([40, 0, 42, 9], 'bbox_degenerate', 'bbox [40, 0, 42, 9] is narrower or shorter than 1 px (zero-area)'),
    ([0, -2, 9, 0], 'bbox_degenerate', 'bbox [0, -2, 9, 0] is narrower or shorter than 1 px (zero-area)'),
    ([1, 5, 9, 5], 'bbox_degenerate', 'bbox [1, 5, 9, 5] is narrower or shorter than 1 px (zero-area)'),
    ([-2, 0, -1, 9], 'bbox_degenerate', 'bbox [-2, 0, -1, 9] is narrower or shorter than 1 px (zero-area)'),
    ([-2, 0, 0.5, 9], 'bbox_degenerate', 'bbox [-2, 0, 0.5, 9] is narrower or shorter than 1 px (zero-area)'),
])
def test_bad_boxes_and_their_words(bbox, why, message):
    err = error(rec(regions=[region([1, 1, 9, 9]), region(bbox)]))
    assert (err.reason, err.field, err.message) == (why, 'regions[1].bbox', message)


def test_box_edges_are_inclusive_and_clipped():
    # exactly the tolerance outside, exactly the minimum size: kept
    clean, _ = validate_record(rec(regions=[region([-2, -2, 42, 32]), region((3, 4, 4, 5)),
                                            region([-1, 29, 41, 31])]))
    assert clean['bboxes'].tolist() == [[0, 0, 40, 30], [3, 4, 4, 5], [0, 29, 40, 30]]
    # other rules: no tolerance, a larger minimum size
    err = error(rec(regions=[region([-0.5, 0, 9, 9])]), clip_tolerance=0)
    assert err.message == 'bbox [-0.5, 0, 9, 9] lies more than 0 px outside the 40x30 image'
    err = error(rec(regions=[region([0, 0, 3, 9])]), min_box_size=4)
    assert err.message == 'bbox [0, 0, 3, 9] is narrower or shorter than 4 px (zero-area)'
    clean, _ = validate_record(rec(regions=[region([0, 0, 4, 4])]), ValidationRules(min_box_size=4))
    assert clean['bboxes'].tolist() == [[0, 0, 4, 4]]
    clean, _ = validate_record(rec(regions=[region([-4.5, 0, 9, 33])]), ValidationRules(clip_tolerance=5))
    assert clean['bboxes'].tolist() == [[0, 0, 9, 30]]


def test_bad_regions_and_their_words():
    err = error(rec(regions=[['not', 'a', 'dict']]))
    assert (err.reason, err.field, err.message) == ('bad_region', 'regions[0]',
                                                    'a region must be an object, got list')
    err = error(rec(regions=[region([1, 1, 9, 9]), dict(caption='no box')]))
    assert (err.reason, err.field, err.message) == ('missing_field', 'regions[1].bbox', 'region has no bbox')
    err = error(rec(regions=[region([1, 1, 9, 9], kind='word')]))
    assert (err.reason, err.field, err.message) == ('bad_kind', 'regions[0].kind',
                                                    "kind must be one of ('object', 'text'), got 'word'")
    err = error(rec(regions={'bbox': [1, 1, 9, 9]}))
    assert (err.reason, err.field, err.message) == ('bad_region', 'regions',
                                                    'regions must be a list, got dict')


def test_empty_and_all_bad_region_lists():
    for empty in [rec(regions=[]), {k: v for k, v in rec().items() if k != 'regions'}]:
        err = error(empty)
        assert (err.reason, err.field, err.message) == ('no_regions', 'regions', 'region list is empty')
        clean, dropped = validate_record(empty, ValidationRules(allow_empty_regions=True))
        assert clean['bboxes'].shape == (0, 4) and clean['bboxes'].dtype == np.float32 and dropped == []
        assert clean['region_captions'] == [] and clean['region_kinds'] == []
    two_bad = rec(regions=[region([9, 1, 1, 9]), region([1, 1, 9, 9], kind='word')])
    err = error(two_bad, bad_region='drop')
    assert (err.reason, err.message) == ('no_regions', 'all 2 regions were bad')
    # in the default mode the first bad region spoils the record, with its own reason
    assert error(two_bad).reason == 'bbox_inverted'
    clean, dropped = validate_record(two_bad, ValidationRules(bad_region='drop', allow_empty_regions=True))
    assert clean['bboxes'].shape == (0, 4)
    assert [(d.reason, d.field) for d in dropped] == [('bbox_inverted', 'regions[0].bbox'),
                                                      ('bad_kind', 'regions[1].kind')]


def test_drop_mode_keeps_the_good_regions_in_order():
    regions = [region([1, 1, 9, 9], 'a'), region([9, 1, 1, 9], 'bad'),
               region([2, 2, 8, 8], 'b', kind='text')]
    clean, dropped = validate_record(rec(regions=regions), ValidationRules(bad_region='drop'))
    assert clean['region_captions'] == ['a', 'b'] and clean['region_kinds'] == ['object', 'text']
    assert clean['bboxes'].tolist() == [[1, 1, 9, 9], [2, 2, 8, 8]]
    assert len(dropped) == 1 and dropped[0].field == 'regions[1].bbox'


def test_make_record_is_the_canonical_layout():
    made = make_record('x.jpg', 10.0, '8', [dict(bbox=[1.234, 2.005, 3, 4.5678], caption='é'),
                                            dict(bbox=[0, 0, 1, 1], caption='t', kind='text')])
    assert list(made) == ['image', 'width', 'height', 'source', 'caption', 'regions']
    assert made == dict(image='x.jpg', width=10, height=8, source='', caption=None,
                        regions=[dict(bbox=[1.23, 2.0, 3.0, 4.57], caption='é', kind='object'),
                                 dict(bbox=[0.0, 0.0, 1.0, 1.0], caption='t', kind='text')])
    assert [list(r) for r in made['regions']] == [['bbox', 'caption', 'kind']] * 2
    assert type(made['width']) is int and type(made['height']) is int
    assert make_record('x.jpg', 1, 1, [], caption='c', source='s')['caption'] == 'c'
    assert make_record('x.jpg', 1, 1, [], caption='c', source='s')['source'] == 's'


def test_dump_record_is_one_compact_readable_line():
    line = dump_record(make_record('x.jpg', 10, 8, [dict(bbox=[1, 2, 3, 4], caption='é\n')], None, 'src'))
    assert line == ('{"image":"x.jpg","width":10,"height":8,"source":"src","caption":null,'
                    '"regions":[{"bbox":[1.0,2.0,3.0,4.0],"caption":"é\\n","kind":"object"}]}')
