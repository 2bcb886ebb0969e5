"""Converters on small fixtures in each source's real format, read back through the training pipeline."""
import json
import pickle

import pytest
from gran_data_helpers import pipeline, write_image
from repo_tools import load_tool

from granvit_mm.datasets import GranDataset
from granvit_mm.datasets.converters import load_basic_pickle, refcoco_eval_image_ids
from granvit_mm.datasets.converters.ocr import paddle_result_lines, parse_icdar2015_line


def tool(name):
    return load_tool(f'tools/dataset_converters/{name}.py').main


def read_back(out, root, prefix='', tasks=None):
    ds = GranDataset(
        out,
        data_root=root,
        data_prefix=dict(img_path=prefix),
        on_bad_record='raise',
        pipeline=pipeline(size=32, tasks=tasks))
    return ds, [ds[i]['data_samples'] for i in range(len(ds))]


def dump(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f)
    return str(path)


# ---- COCO / RefCOCO ------------------------------------------------------------------------------------
@pytest.fixture
def coco(tmp_path):
    (tmp_path / 'train2014').mkdir()
    images = [
        dict(id=1, file_name='COCO_train2014_000000000001.jpg', width=64, height=48),
        dict(id=2, file_name='COCO_train2014_000000000002.jpg', width=50, height=50),
        dict(id=3, file_name='COCO_train2014_000000000003.jpg', width=40, height=40)
    ]
    for im in images:
        write_image(tmp_path / 'train2014' / im['file_name'], im['width'], im['height'])
    instances = dict(
        images=images,
        categories=[dict(id=1, name='person'), dict(id=18, name='dog')],
        annotations=[
            dict(id=10, image_id=1, bbox=[2, 3, 20, 30], category_id=1, iscrowd=0),
            dict(id=11, image_id=1, bbox=[30, 5, 30, 40], category_id=18, iscrowd=0),
            dict(id=12, image_id=2, bbox=[0, 0, 50, 50], category_id=18, iscrowd=1),
            dict(id=13, image_id=2, bbox=[5, 5, 10, 10], category_id=1, iscrowd=0),
            dict(id=14, image_id=3, bbox=[1, 1, 10, 10], category_id=1, iscrowd=0)
        ])
    refs = [  # the refer API's refs(unc).p layout
        dict(
            ref_id=0,
            ann_id=10,
            image_id=1,
            split='train',
            category_id=1,
            file_name='COCO_train2014_000000000001_10.jpg',
            sent_ids=[0, 1],
            sentences=[
                dict(tokens=['man', 'left'], raw='Man, left!', sent_id=0, sent='man left'),
                dict(tokens=['guy'], raw='guy', sent_id=1, sent='guy')
            ]),
        dict(
            ref_id=1,
            ann_id=11,
            image_id=1,
            split='train',
            category_id=18,
            file_name='x',
            sent_ids=[2],
            sentences=[dict(tokens=['dog'], raw='Dog', sent_id=2, sent='dog')]),
        dict(
            ref_id=2,
            ann_id=14,
            image_id=3,
            split='testA',
            category_id=1,
            file_name='y',
            sent_ids=[3],
            sentences=[dict(tokens=['person'], raw='person', sent_id=3, sent='person')])
    ]
    with open(tmp_path / 'refs(unc).p', 'wb') as f:
        pickle.dump(refs, f, protocol=2)
    captions = dict(
        images=images,
        annotations=[
            dict(id=1, image_id=1, caption='A man and a dog.'),
            dict(id=2, image_id=1, caption='A man walking his brown dog in a park.'),
            dict(id=3, image_id=2, caption='A person.'),
            dict(id=4, image_id=3, caption='Test image.')
        ])
    return dict(
        root=str(tmp_path),
        instances=dump(tmp_path / 'instances.json', instances),
        refs=str(tmp_path / 'refs(unc).p'),
        captions=dump(tmp_path / 'captions_train2014.json', captions))


def test_refcoco(coco, tmp_path):
    out = str(tmp_path / 'out' / 'refcoco.jsonl')
    stats = tool('coco_refcoco_to_gran')([
        'refcoco', '--refs', coco['refs'], '--instances', coco['instances'], '--img-prefix', 'train2014/',
        '--captions', coco['captions'], '--out', out
    ])
    assert stats['records_out'] == 1 and stats['regions_out'] == 3
    ds, samples = read_back(out, coco['root'], tasks=dict(global_caption=1, bbox2caption=3))
    rec = ds.read_record(0)
    assert rec['caption'] == 'A man walking his brown dog in a park.'
    assert [r['caption'] for r in rec['regions']] == ['man left', 'guy', 'dog']
    assert rec['regions'][0]['bbox'] == [2, 3, 22, 33]  # xywh -> xyxy
    assert {t['answer'] for t in samples[0].tasks} == {'man left', 'guy', 'dog', rec['caption']}


def test_refcoco_raw_first_and_eval_split(coco, tmp_path):
    out = str(tmp_path / 'r.jsonl')
    tool('coco_refcoco_to_gran')([
        'refcoco', '--refs', coco['refs'], '--instances', coco['instances'], '--splits', 'testA',
        '--text-field', 'raw', '--sentences', 'first', '--out', out
    ])
    ds = GranDataset(out, pipeline=[])
    assert len(ds) == 1 and ds.read_record(0)['regions'][0]['caption'] == 'person'
    assert refcoco_eval_image_ids(load_basic_pickle(coco['refs'])) == {3}


def test_refs_pickle_cannot_run_code(tmp_path):

    class Evil:

        def __reduce__(self):
            return (print, ('pwned', ))

    with open(tmp_path / 'evil.p', 'wb') as f:
        pickle.dump([Evil()], f)
    with pytest.raises(pickle.UnpicklingError):
        load_basic_pickle(str(tmp_path / 'evil.p'))


def test_coco_captions_excludes_refcoco_eval_images(coco, tmp_path):
    out = str(tmp_path / 'caps.jsonl')
    stats = tool('coco_refcoco_to_gran')([
        'captions', '--captions', coco['captions'], '--instances', coco['instances'], '--exclude-refs',
        coco['refs'], '--img-prefix', 'train2014/', '--pick', 'first', '--out', out
    ])
    assert stats['records_out'] == 2 and stats['images_excluded_refcoco_eval'] == 1
    ds, samples = read_back(out, coco['root'])
    recs = [ds.read_record(i) for i in range(2)]
    assert [r['caption'] for r in recs] == ['A man and a dog.', 'A person.']
    assert [r['caption'] for r in recs[1]['regions']] == ['person']  # the crowd box is skipped
    assert samples[0].tasks[0]['answer'] == 'A man and a dog.'


def test_coco_captions_without_instances_needs_empty_regions(coco, tmp_path):
    out = str(tmp_path / 'c.jsonl')
    tool('coco_refcoco_to_gran')(
        ['captions', '--captions', coco['captions'], '--img-prefix', 'train2014/', '--out', out])
    ds = GranDataset(
        out,
        data_root=coco['root'],
        rules=dict(allow_empty_regions=True),
        pipeline=pipeline(size=32, tasks=dict(global_caption=1)),
        on_bad_record='raise')
    assert len(ds) == 3 and ds[0]['data_samples'].distill_bboxes.shape == (0, 4)


# ---- Visual Genome --------------------------------------------------------------------------------------
def test_visual_genome(tmp_path):
    (tmp_path / 'VG_100K').mkdir()
    write_image(tmp_path / 'VG_100K' / '1.jpg', 80, 60)
    image_data = [
        dict(
            image_id=1,
            width=80,
            height=60,
            url='https://cs.stanford.edu/people/rak248/VG_100K/1.jpg',
            coco_id=None,
            flickr_id=None),
        dict(image_id=2, width=10, height=10, url='x/VG_100K_2/2.jpg')
    ]
    regions = [
        dict(
            id=1,
            regions=[
                dict(region_id=1, width=20, height=10, image_id=1, phrase='the clock is green', y=5, x=3),
                dict(region_id=2, width=20, height=10, image_id=1, phrase='the  clock is green ', y=5,
                     x=3),  # duplicate
                dict(region_id=3, width=30, height=20, image_id=1, phrase='a man', y=30,
                     x=79),  # far outside: dropped
                dict(region_id=4, width=10, height=10, image_id=1, phrase='sky', y=0, x=71)
            ])
    ]  # 1 px outside: clipped
    out = str(tmp_path / 'vg.jsonl')
    stats = tool('visual_genome_to_gran')([
        '--regions',
        dump(tmp_path / 'region_descriptions.json', regions), '--image-data',
        dump(tmp_path / 'image_data.json', image_data), '--out', out
    ])
    assert stats['regions_out'] == 2 and stats['regions_dropped:bbox_out_of_image'] == 1
    ds, samples = read_back(out, str(tmp_path))
    rec = ds.read_record(0)
    assert rec['image'] == 'VG_100K/1.jpg' and rec['caption'] is None
    assert rec['regions'][1] == dict(bbox=[71, 0, 80, 10], caption='sky', kind='object')
    assert len(samples[0].tasks) == 2


# ---- OCR ---------------------------------------------------------------------------------------------
def test_icdar2015(tmp_path):
    (tmp_path / 'imgs').mkdir()
    (tmp_path / 'gt').mkdir()
    write_image(tmp_path / 'imgs' / 'img_1.jpg', 100, 80)
    (tmp_path / 'gt' / 'gt_img_1.txt').write_text(
        '\ufeff7,17,46,17,46,40,7,40,###\n'
        '10,20,60,22,59,40,9,38,Hello, world\n'
        '50,50,90,50,90,70,50,70,###\n\n',
        encoding='utf-8')
    out = str(tmp_path / 'ic15.jsonl')
    stats = tool('ocr_to_gran')([
        'icdar2015', '--img-dir',
        str(tmp_path / 'imgs'), '--gt-dir',
        str(tmp_path / 'gt'), '--img-prefix', 'imgs/', '--out', out
    ])
    assert stats['regions_out'] == 1
    ds, samples = read_back(out, str(tmp_path), tasks=dict(bbox2caption=2))
    rec = ds.read_record(0)
    assert rec['regions'] == [dict(bbox=[9, 20, 60, 40], caption='Hello, world', kind='text')]
    assert rec['caption'] is None and samples[0].tasks[0]['answer'] == 'Hello, world'
    assert parse_icdar2015_line('   ') is None


def test_textocr(tmp_path):
    write_image(tmp_path / 'a.jpg', 64, 64)
    data = dict(
        imgs={'a': dict(id='a', width=64, height=64, set='train', file_name='a.jpg')},
        anns={
            'a_1':
            dict(
                id='a_1',
                image_id='a',
                bbox=[1, 2, 30, 10],
                utf8_string='EXIT',
                points=[1, 2, 31, 2, 31, 12, 1, 12],
                area=300),
            'a_2':
            dict(id='a_2', image_id='a', bbox=[5, 30, 10, 10], utf8_string='.', points=[], area=100)
        },
        img2Anns={'a': ['a_1', 'a_2']})
    out = str(tmp_path / 't.jsonl')
    tool('ocr_to_gran')(['textocr', '--json', dump(tmp_path / 'TextOCR_0.1_train.json', data), '--out', out])
    ds, _ = read_back(out, str(tmp_path))
    assert ds.read_record(0)['regions'] == [dict(bbox=[1, 2, 31, 12], caption='EXIT', kind='text')]


def test_ppocr_label(tmp_path):
    (tmp_path / 'docs').mkdir()
    write_image(tmp_path / 'docs' / 'p1.png', 120, 90)
    entries = [
        dict(transcription='Invoice 42', points=[[10, 10], [80, 12], [80, 30], [10, 28]], difficult=False),
        dict(transcription='###', points=[[1, 1], [5, 1], [5, 5], [1, 5]], difficult=False),
        dict(transcription='blurry', points=[[1, 50], [50, 50], [50, 60], [1, 60]], difficult=True)
    ]
    (tmp_path / 'Label.txt').write_text(
        'docs/p1.png\t' + json.dumps(entries, ensure_ascii=False) + '\n', encoding='utf-8')
    out = str(tmp_path / 'pp.jsonl')
    tool('ocr_to_gran')(
        ['ppocr-label', '--label',
         str(tmp_path / 'Label.txt'), '--img-root',
         str(tmp_path), '--out', out])
    ds, _ = read_back(out, str(tmp_path))
    assert ds.read_record(0)['regions'] == [dict(bbox=[10, 10, 80, 30], caption='Invoice 42', kind='text')]


def test_paddle_json_v2_and_v3(tmp_path):
    write_image(tmp_path / 'a.png', 100, 50)
    write_image(tmp_path / 'b.png', 100, 50)
    v2 = {
        'a.png': [[[[[2, 3], [40, 3], [40, 20], [2, 20]], ['TOTAL', 0.98]],
                   [[[50, 3], [90, 3], [90, 20], [50, 20]], ['noise', 0.2]]]]
    }  # ocr() nests one list per page
    v3 = dict(
        res=dict(
            input_path='/somewhere/b.png',
            rec_texts=['42.00'],
            rec_scores=[0.9],
            rec_polys=[[[10, 10], [60, 10], [60, 30], [10, 30]]]))
    out = str(tmp_path / 'pj.jsonl')
    tool('ocr_to_gran')([
        'paddle-json', '--json',
        dump(tmp_path / 'v2.json', v2),
        dump(tmp_path / 'b_res.json', v3), '--img-root',
        str(tmp_path), '--out', out
    ])
    ds, _ = read_back(out, str(tmp_path))
    recs = {ds.read_record(i)['image']: ds.read_record(i)['regions'] for i in range(2)}
    assert recs['a.png'] == [dict(bbox=[2, 3, 40, 20], caption='TOTAL', kind='text')]
    assert recs['b.png'] == [dict(bbox=[10, 10, 60, 30], caption='42.00', kind='text')]
    assert paddle_result_lines(v2['a.png'][0]) == paddle_result_lines(v2['a.png'])  # un-nested page too


# ---- UMG -----------------------------------------------------------------------------------------------
def test_umg(tmp_path):
    (tmp_path / 'anns' / 'sub').mkdir(parents=True)
    write_image(tmp_path / 'u1.jpg', 60, 40)
    write_image(tmp_path / 'u2.jpg', 60, 40)
    dump(
        tmp_path / 'anns' / 'u1.json',
        dict(
            image='u1.jpg',
            width=60,
            height=40,
            caption='a street',
            objects=[
                dict(bbox=[1, 2, 30, 20], caption='a red car'),
                dict(bbox=[0.5, 0.5, 1.0, 1.0], label='tree'),
                dict(bbox=[3, 3, 9, 9])
            ]))
    dump(tmp_path / 'anns' / 'sub' / 'u2.json',
         dict(file_name='u2.jpg', regions=[dict(box=[5, 5, 10, 10], phrase='a sign')]))
    out = str(tmp_path / 'umg.jsonl')
    tool('umg_to_gran')([str(tmp_path / 'anns'), '--img-root', str(tmp_path), '--out', out])
    ds, _ = read_back(out, str(tmp_path))
    recs = {ds.read_record(i)['image']: ds.read_record(i) for i in range(2)}
    r1, r2 = recs['u1.jpg'], recs['u2.jpg']
    assert r1['caption'] == 'a street'
    assert r1['regions'] == [
        dict(bbox=[1, 2, 30, 20], caption='a red car', kind='object'),
        dict(bbox=[30, 20, 60, 40], caption='tree', kind='object')
    ]  # normalised -> px
    assert (r2['width'], r2['height']) == (60, 40)  # read from the image


def test_umg_xywh(tmp_path):
    write_image(tmp_path / 'u.jpg', 60, 40)
    (tmp_path / 'u.jsonl').write_text(
        json.dumps(dict(image='u.jpg', size=[60, 40], objects=[dict(bbox=[5, 5, 10, 10], caption='x')])) +
        '\n')
    out = str(tmp_path / 'o.jsonl')
    tool('umg_to_gran')([str(tmp_path / 'u.jsonl'), '--bbox-format', 'xywh', '--out', out])
    assert GranDataset(out, pipeline=[]).read_record(0)['regions'][0]['bbox'] == [5, 5, 15, 15]


# ---- filters -------------------------------------------------------------------------------------------
def test_filter_reports_each_rule(tmp_path):

    def rec(w, h, boxes, kind='object'):
        return json.dumps(
            dict(
                image='x.jpg',
                width=w,
                height=h,
                caption=None,
                regions=[dict(bbox=b, caption='c', kind=kind) for b in boxes]))

    lines = [
        rec(600, 500,
            [[0, 0, 200, 200], [0, 0, 50, 50], [0, 0, 400, 110]]),  # keeps 1 box: 1 area, 1 aspect out
        rec(400, 500, [[0, 0, 200, 200]]),  # short side 400 <= 448
        rec(2000, 500, [[0, 0, 200, 200]]),  # aspect 4 > 3
        rec(600, 500, [[0, 0, 90, 90]]),  # its only box too small -> no boxes
        rec(600, 500, [[0, 0, 20, 20]], kind='text'),  # text kept with --box-kinds object below
        'broken json',
    ]
    src = tmp_path / 'raw.jsonl'
    src.write_text('\n'.join(lines) + '\n')
    out = str(tmp_path / 'f.jsonl')
    stats = tool('filter_gran')([str(src), '--out', out, '--report', str(tmp_path / 'r.json')])
    assert stats['images_in'] == 5 and stats['images_out'] == 1
    assert stats['images_removed:short_side'] == 1 and stats['images_removed:image_aspect'] == 1
    assert stats['images_removed:no_boxes'] == 2
    assert stats['boxes_removed:box_area'] == 3 and stats['boxes_removed:box_aspect'] == 1
    assert stats['malformed:json'] == 1
    assert len(GranDataset(out, pipeline=[])) == 1
    stats = tool('filter_gran')([str(src), '--out', out, '--box-kinds', 'object'])
    assert stats['images_out'] == 2
