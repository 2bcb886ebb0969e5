"""Local copies of benchmark data in the form lmms-eval's tasks load, with the task YAMLs that name them.

Nothing can be downloaded here, so each copy is written from files a user has: one parquet file per split with
the columns of the lmms-lab dataset the stock task reads (``lmms-lab/RefCOCO``: ``question_id, image,
question, answer, bbox`` (COCO xywh pixels of the original image), ...; ``lmms-lab/DocVQA`` / ``textvqa``:
``question_id, question, answers, image``), and a YAML per task (``dataset_path: parquet``, ``data_files``
pointing at it) whose hooks are :mod:`granvit_mm.benchmarks.lmms_tasks`. Run lmms-eval with ``--include_path
<out_dir>``.

Tasks (what ``--tasks`` names):
- ``gransynth_rec``: GranSynth val as a RefCOCO-style referring-expression task (Acc@0.5 and lmms-eval's other
  REC metrics), the paper's Caption2Bbox prompt; ``gransynth_rec_lmms_prompt``: the same with lmms-eval's
  prompt.
- ``gransynth_attr_vqa``: the attribute questions of ``toy.gran_synth_instruct`` (exact match).
- ``granvit_<refcoco|refcoco+|refcocog>_bbox_rec_<split>``: RefCOCO-family splits from the refer API files.
- ``granvit_docvqa_<split>`` (ANLS) / ``granvit_textvqa_<split>`` (VQA accuracy): VQA JSON + images.
"""
import json
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence

SHIM = 'granvit_lmms_utils.py'
REC_METRIC_FNS = dict(zip(('IoU', 'ACC@0.1', 'ACC@0.3', 'ACC@0.5', 'ACC@0.7', 'ACC@0.9', 'Center_ACC'),
                          ('rec_iou', 'rec_acc01', 'rec_acc03', 'rec_acc05', 'rec_acc07', 'rec_acc09',
                           'rec_center_acc')))
GEN = 'generation_kwargs:\n  max_new_tokens: {max_new_tokens}\n  temperature: 0\n  do_sample: false\n'


def _image(path: str) -> dict:
    with open(path, 'rb') as f:
        return {'bytes': f.read(), 'path': osp.basename(path)}


def write_parquet(rows: List[dict], features, path: str) -> str:
    from datasets import Dataset
    os.makedirs(osp.dirname(path), exist_ok=True)
    Dataset.from_list(rows, features=features).to_parquet(path)
    return path


def rec_features():
    from datasets import Features, Image
    from datasets import Sequence as Seq
    from datasets import Value
    return Features(question_id=Value('string'), image=Image(), question=Value('string'),
                    answer=Seq(Value('string')), bbox=Seq(Value('float64')), file_name=Value('string'))


def vqa_features():
    from datasets import Features, Image
    from datasets import Sequence as Seq
    from datasets import Value
    return Features(question_id=Value('string'), image=Image(), question=Value('string'),
                    answers=Seq(Value('string')), file_name=Value('string'))


def rec_row(qid: str, image_path: str, sentences: Sequence[str], box_xyxy: Sequence[float],
            file_name: str) -> dict:
    x1, y1, x2, y2 = [float(v) for v in box_xyxy]
    return dict(question_id=str(qid), image=_image(image_path), question=sentences[0], answer=list(sentences),
                bbox=[x1, y1, x2 - x1, y2 - y1], file_name=file_name)


def task_yaml(task: str, data_file: str, kind: str, doc_to_text: str = 'rec_doc_to_text',
              max_new_tokens: int = 32, post_prompt: str = '') -> str:
    """The YAML of one task (``kind``: 'rec', 'vqa_exact', 'docvqa', 'textvqa')."""
    head = (f'task: {task}\ndataset_path: parquet\ndataset_kwargs:\n  data_files:\n    test: {data_file}\n'
            'test_split: test\noutput_type: generate_until\n')
    fn = f'!function {SHIM[:-3]}.'
    if kind == 'rec':
        metrics = ''.join(f'  - metric: refcoco_{m}\n    aggregation: {fn}{f}\n    higher_is_better: true\n'
                          for m, f in REC_METRIC_FNS.items())
        return (head + f'process_docs: {fn}rec_process_docs\ndoc_to_visual: {fn}rec_doc_to_visual\n'
                f'doc_to_text: {fn}{doc_to_text}\ndoc_to_target: bbox\n'
                + GEN.format(max_new_tokens=max_new_tokens)
                + f'process_results: {fn}rec_process_results\nmetric_list:\n{metrics}'
                'metadata:\n  version: 0.0\n')
    body = (f'doc_to_visual: {fn}vqa_doc_to_visual\ndoc_to_text: {fn}vqa_doc_to_text\n'
            'doc_to_target: answers\n'
            + GEN.format(max_new_tokens=max_new_tokens)
            + 'lmms_eval_specific_kwargs:\n  default:\n    pre_prompt: ""\n'
            + f'    post_prompt: {json.dumps(post_prompt)}\n')
    if kind == 'vqa_exact':
        body += f'process_results: {fn}vqa_exact_match\n'
        metric = 'exact_match'
    elif kind == 'textvqa':
        body += f'process_results: {fn}textvqa_process_results\n'
        metric = 'exact_match'
    elif kind == 'docvqa':
        metric = 'anls'  # lmms-eval's built-in ANLS against doc_to_target, as its docvqa_val task
    else:
        raise ValueError(f'unknown task kind {kind!r}')
    return (head + body + f'metric_list:\n  - metric: {metric}\n    aggregation: mean\n'
            '    higher_is_better: true\n'
            'metadata:\n  version: 0.0\n')


def write_task(out_dir: str, task: str, rows: List[dict], features, kind: str, **yaml_kwargs) -> str:
    """``out_dir/data/<task>.parquet`` + ``out_dir/<task>.yaml`` + the hooks shim; returns the YAML path."""
    if not rows:
        raise ValueError(f'{task}: no questions to write')
    os.makedirs(out_dir, exist_ok=True)
    data = write_parquet(rows, features, osp.join(osp.abspath(out_dir), 'data', f'{task}.parquet'))
    with open(osp.join(out_dir, SHIM), 'w') as f:
        f.write('"""lmms-eval hooks of the tasks in this folder '
                '(written by granvit_mm.benchmarks.lmms_data)."""\n'
                'from granvit_mm.benchmarks.lmms_tasks import *  # noqa: F401,F403\n')
    path = osp.join(out_dir, f'{task}.yaml')
    with open(path, 'w') as f:
        f.write(task_yaml(task, data, kind, **yaml_kwargs))
    return path


# ---- GranSynth (the toy) --------------------------------------------------------------------------------
def gran_synth_rows(data_root: str, split: str = 'val', max_questions: Optional[int] = None):
    """(REC rows, attribute-VQA rows) of GranSynth ``split``: every region whose caption is unique in its
    image, and every attribute question; boxes stay in the original image's pixels (lmms-eval's
    convention)."""
    from granvit_mm.toy.gran_synth_instruct import attribute_questions, read_gran, unique_regions
    rec, vqa = [], []
    for i, r in enumerate(read_gran(osp.join(data_root, 'annotations', f'{split}.jsonl'))):
        path = osp.join(data_root, 'images', r['image'])
        for j in unique_regions(r):
            rec.append(rec_row(f'{i}_{j}', path, [r['regions'][j]['caption']], r['regions'][j]['bbox'],
                               r['image']))
        for k, (q, a, _) in enumerate(attribute_questions(r)):
            vqa.append(dict(question_id=f'{i}_{k}', image=_image(path), question=q, answers=[a],
                            file_name=r['image']))
    return rec[:max_questions], vqa[:max_questions]


def write_gran_synth_tasks(data_root: str, out_dir: str, split: str = 'val',
                           max_questions: Optional[int] = None) -> Dict[str, int]:
    rec, vqa = gran_synth_rows(data_root, split, max_questions)
    write_task(out_dir, 'gransynth_rec', rec, rec_features(), 'rec')
    write_task(out_dir, 'gransynth_rec_lmms_prompt', rec, rec_features(), 'rec',
               doc_to_text='rec_doc_to_text_lmms')
    write_task(out_dir, 'gransynth_attr_vqa', vqa, vqa_features(), 'vqa_exact', max_new_tokens=8)
    return dict(gransynth_rec=len(rec), gransynth_rec_lmms_prompt=len(rec), gransynth_attr_vqa=len(vqa))


# ---- RefCOCO / RefCOCO+ / RefCOCOg ---------------------------------------------------------------------
def refcoco_rows(refs: Iterable[dict], instances: dict, image_root: str, split: str,
                 max_questions: Optional[int] = None) -> List[dict]:
    """One row a referring object of ``split`` (all its sentences as ``answer``, lmms-lab/RefCOCO's
    layout)."""
    from granvit_mm.datasets.converters.coco import _ref_sentences
    from granvit_mm.datasets.converters.common import xywh_to_xyxy
    images = {int(im['id']): im for im in instances['images']}
    anns = {int(a['id']): a for a in instances['annotations']}
    rows = []
    for ref in refs:
        if ref.get('split') != split or int(ref['ann_id']) not in anns:
            continue
        sentences = _ref_sentences(ref, 'sent', 'all')
        if not sentences:
            continue
        im = images[int(ref['image_id'])]
        path = osp.join(image_root, im['file_name'])
        if not osp.isfile(path):
            raise FileNotFoundError(f'RefCOCO image of ref {ref.get("ref_id")} not found: {path} '
                                    '(--image-root is the COCO train2014 folder)')
        rows.append(rec_row(str(ref['ann_id']), path, sentences,
                            xywh_to_xyxy(anns[int(ref['ann_id'])]['bbox']),
                            im['file_name']))
        if max_questions and len(rows) >= max_questions:
            break
    return rows


def write_refcoco_tasks(name: str, refs_pickle: str, instances_json: str, image_root: str, out_dir: str,
                        splits: Sequence[str], max_questions: Optional[int] = None) -> Dict[str, int]:
    from granvit_mm.datasets.converters.common import load_basic_pickle
    refs = load_basic_pickle(refs_pickle)
    with open(instances_json) as f:
        instances = json.load(f)
    counts = {}
    for split in splits:
        task = f'granvit_{name}_bbox_rec_{split}'
        rows = refcoco_rows(refs, instances, image_root, split, max_questions)
        write_task(out_dir, task, rows, rec_features(), 'rec')
        counts[task] = len(rows)
    return counts


# ---- DocVQA / TextVQA-style JSON ---------------------------------------------------------------------------
def vqa_json_rows(json_path: str, image_root: str, max_questions: Optional[int] = None) -> List[dict]:
    """DocVQA (``questionId``, ``image`` path) or TextVQA (``question_id``, ``image_id``) JSON -> rows."""
    with open(json_path) as f:
        data = json.load(f)
    rows = []
    for i, q in enumerate(data['data'] if isinstance(data, dict) else data):
        qid = q.get('questionId', q.get('question_id', i))
        image = q.get('image') or f"{q['image_id']}.jpg"
        path = osp.join(image_root, image)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{json_path} question {qid}: image not found: {path}')
        answers = q.get('answers') or []
        if not answers:
            raise ValueError(f'{json_path} question {qid}: no answers (test splits have none: use val)')
        rows.append(dict(question_id=str(qid), image=_image(path), question=q['question'],
                         answers=[str(a) for a in answers], file_name=image))
        if max_questions and len(rows) >= max_questions:
            break
    return rows


def write_vqa_task(kind: str, json_path: str, image_root: str, out_dir: str, split: str = 'val',
                   max_questions: Optional[int] = None) -> Dict[str, int]:
    """``kind``: 'docvqa' (ANLS) or 'textvqa' (VQA accuracy); lmms-eval's post-prompt for both."""
    rows = vqa_json_rows(json_path, image_root, max_questions)
    task = f'granvit_{kind}_{split}'
    write_task(out_dir, task, rows, vqa_features(), kind,
               post_prompt='\nAnswer the question using a single word or phrase.')
    return {task: len(rows)}
