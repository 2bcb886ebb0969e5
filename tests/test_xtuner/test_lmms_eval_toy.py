"""The toy benchmarks through lmms-eval itself (its own environment, `make lmms-eval-env`): the GranSynth
tasks load, lmms-eval's RefCOCO truth pipeline scores padded-square answers in original-image coordinates (an
oracle scores 1.0 on non-square images), and `python -m lmms_eval --model llava_hf` runs on an export.
Skips with the reason when the environment is absent (CI note in docs/evaluation.md)."""
import glob
import json
import os
import os.path as osp
import subprocess

import pytest
from stage2_assets import ROOT, save_export

LMMS_PYTHON = os.environ.get('GRANVIT_LMMS_PYTHON', osp.join(ROOT, '.venv-lmms', 'bin', 'python'))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not osp.exists(LMMS_PYTHON),
                                 reason=f'no lmms-eval environment at {LMMS_PYTHON}: '
                                        'run `make lmms-eval-env` (or set GRANVIT_LMMS_PYTHON)')]

ORACLE = '''
import json, sys
from datasets import load_dataset
from granvit_mm.benchmarks import lmms_tasks
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.prompts import caption2bbox_answer
from granvit_mm.toy.gran_synth_instruct import read_gran
data_file, ann_file, cache = sys.argv[1:4]
records = list(read_gran(ann_file))
docs = lmms_tasks.rec_process_docs(
    load_dataset('parquet', data_files={'test': data_file}, cache_dir=cache)['test'])
oracle, naive = [], []
for doc in docs:
    i, j = map(int, doc['question_id'].split('_'))
    r = records[i]
    box = SquareGeometry(r['height'], r['width'], 1).to_normalized(r['regions'][j]['bbox'])[0]
    oracle.append(lmms_tasks.rec_process_results(doc, [caption2bbox_answer(box)])['refcoco_ACC@0.5'])
    res = lmms_tasks.rec_process_results(doc, ['x'])['refcoco_ACC@0.5']
    res['pred'] = [float(v) for v in box]  # the same answer, scored without the conversion
    naive.append(res)
square = sum(r['width'] == r['height'] for r in records)
print(json.dumps(dict(n=len(docs), oracle=lmms_tasks.rec_acc05(oracle), naive=lmms_tasks.rec_acc05(naive),
                      square=square, images=len(records))))
'''


def lmms_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               HF_DATASETS_CACHE=str(tmp_path / 'hf_datasets'), HF_MODULES_CACHE=str(tmp_path / 'modules'))
    return env


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    from granvit_mm.benchmarks.lmms_data import write_gran_synth_tasks
    from granvit_mm.toy.gran_synth import generate
    root = tmp_path_factory.mktemp('toy')
    generate(str(root / 'gs'), num_train=2, num_val=8, image_size=96, seed=5)
    counts = write_gran_synth_tasks(str(root / 'gs'), str(root / 'tasks'))
    return root, counts


def test_oracle_answers_score_one_through_lmms_evals_truth(toy, tmp_path):
    root, counts = toy
    proc = subprocess.run([LMMS_PYTHON, '-c', ORACLE, str(root / 'tasks/data/gransynth_rec.parquet'),
                           str(root / 'gs/annotations/val.jsonl'), str(tmp_path / 'cache')],
                          env=lmms_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['n'] == counts['gransynth_rec'] and out['square'] < out['images']  # non-square images
    assert out['oracle'] == 1.0 and out['naive'] < 1.0


def test_lmms_eval_runs_the_toy_tasks_on_an_export(toy, tiny_llm_dir, encoder_dir, tmp_path):
    root, counts = toy
    export = save_export(str(tmp_path / 'export'), tiny_llm_dir, encoder_dir)
    cmd = [LMMS_PYTHON, '-m', 'lmms_eval', '--model', 'llava_hf', '--model_args',
           f'pretrained={export},device=cpu,device_map=cpu,trust_remote_code=True',
           '--tasks', 'gransynth_rec,gransynth_attr_vqa', '--include_path', str(root / 'tasks'),
           '--batch_size', '1', '--output_path', str(tmp_path / 'results'), '--log_samples']
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=lmms_env(tmp_path), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    [result_file] = glob.glob(str(tmp_path / 'results' / '*' / '*_results.json'))
    res = json.load(open(result_file))
    assert 0.0 <= res['results']['gransynth_rec']['refcoco_ACC@0.5,none'] <= 1.0
    assert 0.0 <= res['results']['gransynth_attr_vqa']['exact_match,none'] <= 1.0
    assert res['n-samples']['gransynth_rec']['effective'] == counts['gransynth_rec']
    assert res['n-samples']['gransynth_attr_vqa']['effective'] == counts['gransynth_attr_vqa']
