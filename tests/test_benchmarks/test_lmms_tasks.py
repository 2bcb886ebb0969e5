"""The lmms-eval task hooks and data copies: answers in padded-square coordinates are scored in the original
image's (lmms-eval's convention), a non-box answer is a miss, and the written copies hold what lmms-eval's
RefCOCO / VQA tasks read."""
import numpy as np
import pytest

from granvit_mm.benchmarks import lmms_data, lmms_tasks
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.prompts import CAPTION2BBOX_PROMPT, caption2bbox_answer


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize('w,h', [(100, 60), (60, 100), (80, 80)])
def test_square_answer_is_scored_in_original_image_coordinates(w, h):
    boxes = {(100, 60): [50.0, 30.0, 90.0, 55.0], (60, 100): [10.0, 50.0, 40.0, 95.0]}
    box = boxes.get((w, h), [10.0, 20.0, 40.0, 70.0])
    truth = [box[0] / w, box[1] / h, box[2] / w, box[3] / h]  # lmms-eval: xywh / (width, height)
    answer = caption2bbox_answer(SquareGeometry(h, w, 512).to_normalized(box)[0])  # what our model writes
    got = lmms_tasks.answer_box(answer, w, h)
    np.testing.assert_allclose(got, truth, atol=2e-3)  # the box text's 3 decimals
    naive = [float(v) for v in answer.strip('[]').split(',')]
    if w != h:  # unconverted, the same answer lands elsewhere on a non-square image
        assert iou(naive, truth) < 0.7
    else:
        assert iou(naive, truth) > 0.99


@pytest.mark.parametrize('answer', ['a red circle', '', '[0.5, 0.5, 0.2, 0.2]', '[1.5, 0.1, 1.9, 0.4]',
                                    '[0.1, 0.2]', 'the box is [0.1, 0.2, 0.1, 0.6]'])
def test_an_answer_that_is_not_a_box_is_a_miss(answer):
    doc = dict(answer='x', question_id='1', bbox=[0.1, 0.1, 0.5, 0.5], image_width=100, image_height=60)
    out = lmms_tasks.rec_process_results(doc, [answer])
    assert out['refcoco_ACC@0.5']['pred'] == lmms_tasks.MISS and set(out) == {
        f'refcoco_{m}' for m in lmms_tasks.REC_METRICS}
    assert lmms_tasks.rec_process_results(doc, [])['refcoco_IoU']['pred'] == lmms_tasks.MISS


def test_box_followed_by_text_still_counts():
    doc = dict(answer='x', question_id='1', bbox=[0.0, 0.0, 1.0, 1.0], image_width=80, image_height=80)
    pred = lmms_tasks.rec_process_results(doc, ['[0.000, 0.000, 1.000, 1.000]\na medium green square'])
    assert pred['refcoco_IoU']['pred'] == [0.0, 0.0, 1.0, 1.0]


def test_prompts():
    doc = dict(answer='a small red circle')
    assert lmms_tasks.rec_doc_to_text(doc) == CAPTION2BBOX_PROMPT.format(caption='a small red circle')
    assert lmms_tasks.vqa_doc_to_text(dict(question='Q?'), dict(post_prompt='\nShort.')) == 'Q?\nShort.'
    assert lmms_tasks.vqa_exact_match(dict(answers=['Red']), ['red.'])['exact_match'] == 1.0
    assert lmms_tasks.vqa_exact_match(dict(answers=['red']), ['blue'])['exact_match'] == 0.0


def test_gran_synth_copies(tmp_path):
    from datasets import load_dataset

    from granvit_mm.toy.gran_synth import generate
    root = tmp_path / 'gs'
    generate(str(root), num_train=2, num_val=6, image_size=96, seed=3)
    counts = lmms_data.write_gran_synth_tasks(str(root), str(tmp_path / 'tasks'))
    assert counts['gransynth_rec'] > 0 and counts['gransynth_attr_vqa'] > 0
    rec = load_dataset('parquet', data_files={'test': str(tmp_path / 'tasks/data/gransynth_rec.parquet')},
                       cache_dir=str(tmp_path / 'cache'))['test']
    assert len(rec) == counts['gransynth_rec']
    row = rec[0]
    x, y, bw, bh = row['bbox']  # RefCOCO's layout: xywh pixels of the original image
    assert 0 <= x < x + bw <= row['image'].width and 0 <= y < y + bh <= row['image'].height
    text = (tmp_path / 'tasks' / 'gransynth_rec.yaml').read_text()
    assert 'doc_to_text: !function granvit_lmms_utils.rec_doc_to_text\n' in text
    assert str(tmp_path / 'tasks/data/gransynth_rec.parquet') in text
    assert 'rec_doc_to_text_lmms' in (tmp_path / 'tasks' / 'gransynth_rec_lmms_prompt.yaml').read_text()
    shim = (tmp_path / 'tasks' / lmms_data.SHIM).read_text()
    assert 'from granvit_mm.benchmarks.lmms_tasks import *' in shim


def test_refcoco_and_vqa_copies(tmp_path):
    import json
    import pickle

    from datasets import load_dataset
    from PIL import Image
    (tmp_path / 'img').mkdir()
    Image.new('RGB', (100, 60)).save(tmp_path / 'img' / 'COCO_1.jpg')
    instances = dict(images=[dict(id=1, file_name='COCO_1.jpg', width=100, height=60)],
                     annotations=[dict(id=7, image_id=1, bbox=[10, 20, 30, 15], category_id=1)])
    (tmp_path / 'instances.json').write_text(json.dumps(instances))
    refs = [dict(ref_id=0, ann_id=7, image_id=1, split='testA',
                 sentences=[dict(sent='left dog'), dict(sent='dog')]),
            dict(ref_id=1, ann_id=7, image_id=1, split='train', sentences=[dict(sent='x')])]
    with open(tmp_path / 'refs.p', 'wb') as f:
        pickle.dump(refs, f)
    counts = lmms_data.write_refcoco_tasks('refcoco', str(tmp_path / 'refs.p'),
                                           str(tmp_path / 'instances.json'),
                                           str(tmp_path / 'img'), str(tmp_path / 'out'), ['testA'])
    assert counts == {'granvit_refcoco_bbox_rec_testA': 1}
    row = load_dataset('parquet',
                       data_files=str(tmp_path / 'out/data/granvit_refcoco_bbox_rec_testA.parquet'),
                       cache_dir=str(tmp_path / 'cache'))['train'][0]
    assert row['answer'] == ['left dog', 'dog'] and row['bbox'] == [10, 20, 30,
                                                                    15] and row['question_id'] == '7'

    (tmp_path / 'docvqa.json').write_text(json.dumps({'data': [
        dict(questionId=5, question='What?', image='COCO_1.jpg', answers=['yes', 'Yes'])]}))
    assert lmms_data.write_vqa_task('docvqa', str(tmp_path / 'docvqa.json'), str(tmp_path / 'img'),
                                    str(tmp_path / 'out')) == {'granvit_docvqa_val': 1}
    assert 'metric: anls' in (tmp_path / 'out' / 'granvit_docvqa_val.yaml').read_text()
    (tmp_path / 'bad.json').write_text(json.dumps({'data': [dict(questionId=6, question='Q', image='nope.png',
                                                                 answers=['a'])]}))
    with pytest.raises(FileNotFoundError, match='question 6'):
        lmms_data.vqa_json_rows(str(tmp_path / 'bad.json'), str(tmp_path / 'img'))
