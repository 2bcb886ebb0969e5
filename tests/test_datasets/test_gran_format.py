import math

import numpy as np
import pytest
from gran_data_helpers import record

from granvit_mm.core.gran_record import (BadRecordError, ValidationRules, dump_record, make_record,
                                         parse_line, validate_record)


def reason(rec, **rules):
    with pytest.raises(BadRecordError) as e:
        validate_record(rec, ValidationRules(**rules))
    return e.value


def test_valid_record_is_cleaned():
    clean, dropped = validate_record(record(caption='  a red image '))
    assert dropped == []
    assert clean['caption'] == 'a red image'
    assert clean['bboxes'].dtype == np.float32 and clean['bboxes'].tolist() == [[2, 3, 20, 25]]
    assert clean['region_captions'] == ['a red square'] and clean['region_kinds'] == ['object']


def test_box_within_tolerance_is_clipped_beyond_is_bad():
    clean, _ = validate_record(record(regions=[dict(bbox=[-1.5, 0, 41.5, 31], caption='x')]))
    assert clean['bboxes'].tolist() == [[0, 0, 40, 30]]
    err = reason(record(regions=[dict(bbox=[0, 0, 43, 30], caption='x')]))
    assert err.reason == 'bbox_out_of_image' and err.field == 'regions[0].bbox'


@pytest.mark.parametrize('bbox,why', [
    ([1, 2, math.nan, 5], 'bbox_nan'),
    ([1, 2, math.inf, 5], 'bbox_nan'),
    ([10, 2, 5, 8], 'bbox_inverted'),
    ([5, 5, 5, 9], 'bbox_degenerate'),
    ([5, 5, 5.5, 9], 'bbox_degenerate'),
    ([1, 2, 3], 'bbox_format'),
    ('1,2,3,4', 'bbox_format'),
    ([1, 2, '3', 4], 'bbox_format'),
])
def test_bad_boxes(bbox, why):
    err = reason(record(regions=[dict(bbox=[1, 1, 9, 9], caption='ok'), dict(bbox=bbox, caption='x')]))
    assert err.reason == why and err.field == 'regions[1].bbox'


@pytest.mark.parametrize('rec,why,field', [
    (record(regions=[]), 'no_regions', 'regions'),
    (record(caption='w ' * 3000), 'caption_too_long', 'caption'),
    (record(regions=[dict(bbox=[1, 1, 9, 9], caption='w' * 301)]), 'caption_too_long', 'regions[0].caption'),
    (record(regions=[dict(bbox=[1, 1, 9, 9], caption=' ')]), 'empty_caption', 'regions[0].caption'),
    (record(regions=[dict(bbox=[1, 1, 9, 9], caption='x', kind='word')]), 'bad_kind', 'regions[0].kind'),
    (record(w=0), 'bad_width', 'width'),
    (record(h=12.5), 'bad_height', 'height'),
    (record(image=''), 'missing_field', 'image'),
    (dict(width=3, height=3, regions=[]), 'missing_field', 'image'),
])
def test_bad_records(rec, why, field):
    err = reason(rec)
    assert (err.reason, err.field) == (why, field)


def test_drop_mode_keeps_good_regions_and_reports_dropped():
    rec = record(regions=[dict(bbox=[1, 1, 9, 9], caption='good'), dict(bbox=[9, 1, 1, 9], caption='bad')])
    clean, dropped = validate_record(rec, ValidationRules(bad_region='drop'))
    assert clean['region_captions'] == ['good']
    assert [d.reason for d in dropped] == ['bbox_inverted']
    all_bad = record(regions=[dict(bbox=[9, 1, 1, 9], caption='bad')])
    assert reason(all_bad, bad_region='drop').reason == 'no_regions'


def test_empty_regions_allowed_by_option_and_missing_kind_defaults():
    clean, _ = validate_record(record(regions=[]), ValidationRules(allow_empty_regions=True))
    assert clean['bboxes'].shape == (0, 4)
    clean, _ = validate_record(record(regions=[dict(bbox=[1, 1, 9, 9], caption='x')]))
    assert clean['region_kinds'] == ['object']


def test_parse_line_errors_and_message_names_location():
    with pytest.raises(BadRecordError) as e:
        parse_line(b'{"image": "a.jpg", ')
    err = e.value.locate('shard-0.jsonl', 17)
    assert err.reason == 'json'
    assert 'shard-0.jsonl:17' in str(err)
    with pytest.raises(BadRecordError):
        parse_line(b'[1, 2]')
    assert parse_line(b'\xef\xbb\xbf{"a": 1}\n') == {'a': 1}


def test_error_survives_pickling():
    import pickle
    err = BadRecordError('bbox_nan', 'nan', 's.jsonl', 3, 'regions[0].bbox')
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.reason == 'bbox_nan'


def test_make_and_dump_round_trip():
    rec = make_record('x.jpg', 10, 8, [dict(bbox=[1.234, 2, 3, 4], caption='é')], None, 'src')
    line = dump_record(rec)
    assert '\n' not in line and 'é' in line
    assert parse_line(line.encode())['regions'][0]['bbox'] == [1.23, 2.0, 3.0, 4.0]
