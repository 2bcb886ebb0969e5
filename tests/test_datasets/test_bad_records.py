"""Bad input never crashes a run nor trains on wrong boxes: errors name shard/line/field, skips count."""
import logging

import pytest
from gran_data_helpers import pipeline, record, write_image, write_jsonl

from granvit_mm.core.gran_record import BadRecordError
from granvit_mm.datasets import GranDataset


@pytest.fixture
def mixed(tmp_path):
    """A shard with one good record per even line and one kind of bad input per odd line."""
    img = tmp_path / 'img'
    img.mkdir()
    write_image(img / 'good.png', 40, 30)
    write_image(img / 'small.png', 20, 20)
    (img / 'junk.png').write_bytes(b'\x89PNG garbage')
    good = record('good.png')
    bad = [
        ('json', '{"image": "good.png", "width": 40,'),
        ('bbox_nan', '{"image": "good.png", "width": 40, "height": 30, "regions": '
         '[{"bbox": [1, 2, NaN, 9], "caption": "x"}]}'),
        ('bbox_degenerate', record('good.png', regions=[dict(bbox=[5, 5, 5, 9], caption='x')])),
        ('bbox_inverted', record('good.png', regions=[dict(bbox=[9, 5, 1, 9], caption='x')])),
        ('bbox_out_of_image', record('good.png', regions=[dict(bbox=[1, 1, 45, 9], caption='x')])),
        ('no_regions', record('good.png', regions=[])),
        ('caption_too_long', record('good.png', caption='word ' * 1000)),
        ('image_missing', record('missing.png')),
        ('image_unreadable', record('junk.png')),
        ('image_size_mismatch', record('small.png')),
    ]
    lines = []
    for _, b in bad:
        lines += [good, b]
    path = write_jsonl(tmp_path / 'shard-0.jsonl', lines)
    return str(tmp_path), path, [r for r, _ in bad]


def build(root, **kw):
    return GranDataset(
        'shard-0.jsonl', data_root=root, data_prefix=dict(img_path='img/'), pipeline=pipeline(size=16), **kw)


def test_raise_names_shard_line_and_field(mixed):
    root, path, reasons = mixed
    ds = build(root, on_bad_record='raise')
    assert ds[0]['inputs'].shape == (3, 16, 16)
    for k, why in enumerate(reasons):
        idx = 2 * k + 1
        with pytest.raises(BadRecordError) as e:
            ds[idx]
        err = e.value
        assert err.reason == why
        assert err.shard == path and err.line == idx + 1
        assert f'{path}:{idx + 1}' in str(err)
        if why.startswith('bbox'):
            assert err.field == 'regions[0].bbox'
        elif why.startswith('image'):
            assert err.field == 'image'


class _Lines(logging.Handler):
    """The messages of MMEngine's current logger (it does not propagate to pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_skip_counts_per_reason_and_resamples(mixed):
    from mmengine.logging import MMLogger
    root, path, reasons = mixed
    ds = build(root, skip_log=dict(verbose_first=3, summary_every=5))
    assert ds.on_bad_record == 'skip'  # the training default
    logger, seen = MMLogger.get_current_instance(), _Lines()
    logger.addHandler(seen)
    try:
        items = [ds[i] for i in range(len(ds))]
    finally:
        logger.removeHandler(seen)
    assert all(it['data_samples'].img_path.endswith('good.png') for it in items)
    counts = ds.skips.as_dict()['records']
    assert sum(counts.values()) >= len(reasons)
    assert set(reasons) <= set(counts)
    # the log: the first 3 skips in full (shard:line and why), then a per-reason summary at 3 and every 5
    total = sum(counts.values())
    full = [line for line in seen.lines if ': skipped (' in line]
    assert [line.split(': skipped (')[1].split(')')[0] for line in full] == ['1', '2', '3']
    assert full[0].startswith('GranDataset: skipped (1): ') and f'{path}:2:' in full[0]  # the first bad line
    logged = [line.rsplit('[', 1)[1].rstrip(']') for line in full]  # each names its shard:line and reason
    assert logged[0] == reasons[0] and set(logged) <= set(reasons)
    assert all(f'{path}:' in line for line in full)
    summaries = [line for line in seen.lines if 'bad records skipped in this process so far' in line]
    assert [int(line.split(': ')[1].split(' ')[0]) for line in summaries] == \
        [3] + [n for n in range(5, total + 1, 5)]
    assert len(seen.lines) == len(full) + len(summaries)
    for reason in logged:
        assert f'{reason}=' in summaries[0]


def test_resample_is_deterministic(mixed):
    root, _, _ = mixed
    a, b = build(root), build(root)
    assert [a[i]['data_samples'].sample_idx for i in range(len(a))] == \
        [b[i]['data_samples'].sample_idx for i in range(len(b))]
    assert a[1]['data_samples'].sample_idx % 2 == 0  # a good record took the bad one's place


def test_test_mode_defaults_to_raise(mixed):
    root, _, _ = mixed
    ds = build(root, test_mode=True)
    with pytest.raises(BadRecordError):
        ds[1]


def test_drop_bad_regions_counted(tmp_path):
    write_image(tmp_path / 'a.png', 40, 30)
    rec = record(
        'a.png', regions=[dict(bbox=[1, 1, 20, 20], caption='ok'),
                          dict(bbox=[9, 9, 1, 1], caption='no')])
    write_jsonl(tmp_path / 'r.jsonl', [rec])
    ds = GranDataset(
        'r.jsonl', data_root=str(tmp_path), rules=dict(bad_region='drop'), pipeline=pipeline(size=16))
    s = ds[0]['data_samples']
    assert {t['answer'] for t in s.tasks if t['task'] == 'bbox2caption'} == {'ok'}
    assert ds.skips.as_dict()['regions'] == {'bbox_inverted': 1}


def test_line_too_long(tmp_path):
    write_jsonl(tmp_path / 'l.jsonl', [record('a.png', caption='x' * 3000)])
    ds = GranDataset(
        'l.jsonl',
        data_root=str(tmp_path),
        rules=dict(max_line_bytes=1000),
        pipeline=[],
        on_bad_record='raise')
    with pytest.raises(BadRecordError, match='line_too_long'):
        ds[0]


def test_all_bad_gives_up_with_summary(tmp_path):
    write_jsonl(tmp_path / 'b.jsonl', ['not json', '{"also": "bad"}'])
    ds = GranDataset('b.jsonl', data_root=str(tmp_path), pipeline=pipeline(size=16), max_refetch=5)
    with pytest.raises(RuntimeError, match='json=') as e:
        ds[0]
    assert 'missing_field' in str(e.value)
