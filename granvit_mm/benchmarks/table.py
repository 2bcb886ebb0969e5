"""The paper's Table 1 from lmms-eval result files: one row an encoder, each benchmark's score, group
averages.

Benchmarks and groups follow the paper (fine-grained: RefCOCO testA, RefCOCO+ testA, RefCOCOg test; OCR:
OCRBench, DocVQA, InfoVQA; VQA: MMBench, HallusionBench, SEED) plus the toy's GranSynth tasks. A benchmark is
found under its stock lmms-eval task name or the name our local copies get (``lmms_data``). Scores are shown
in percent (values in [0, 1] are multiplied by 100); a group average needs every benchmark of the group that
any row has, else it is left blank, as an average over fewer benchmarks would not compare.
"""
import glob
import json
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

# (group, column): (task names, metric key in lmms-eval's results)
BENCHMARKS: 'OrderedDict[Tuple[str, str], Tuple[Tuple[str, ...], str]]' = OrderedDict([
    (('Fine-grained', 'RefCOCO testA'), (('refcoco_bbox_rec_testA', 'granvit_refcoco_bbox_rec_testA'),
                                         'refcoco_ACC@0.5')),
    (('Fine-grained', 'RefCOCO+ testA'), (('refcoco+_bbox_rec_testA', 'granvit_refcoco+_bbox_rec_testA'),
                                          'refcoco_ACC@0.5')),
    (('Fine-grained', 'RefCOCOg test'), (('refcocog_bbox_rec_test', 'granvit_refcocog_bbox_rec_test'),
                                         'refcoco_ACC@0.5')),
    (('OCR', 'OCRBench'), (('ocrbench', ), 'ocrbench_accuracy')),
    (('OCR', 'DocVQA'), (('docvqa_val', 'granvit_docvqa_val'), 'anls')),
    (('OCR', 'InfoVQA'), (('infovqa_val', ), 'anls')),
    (('VQA', 'MMBench'), (('mmbench_en_dev', ), 'gpt_eval_score')),
    (('VQA', 'HallusionBench'), (('hallusion_bench_image', ), 'aAcc')),
    (('VQA', 'SEED'), (('seedbench', ), 'seed_image')),
    (('GranSynth (toy)', 'REC Acc@0.5'), (('gransynth_rec', ), 'refcoco_ACC@0.5')),
    (('GranSynth (toy)', 'REC Acc@0.5, lmms-eval prompt'),
     (('gransynth_rec_lmms_prompt', ), 'refcoco_ACC@0.5')),
    (('GranSynth (toy)', 'attribute VQA'), (('gransynth_attr_vqa', ), 'exact_match')),
])


def result_files(path: str) -> List[str]:
    """lmms-eval ``*_results.json`` files under ``path`` (a file, or its ``--output_path``), oldest first."""
    if osp.isfile(path):
        return [path]
    files = glob.glob(osp.join(path, '*_results.json')) + glob.glob(osp.join(path, '*', '*_results.json'))
    if not files:
        raise FileNotFoundError(f'no lmms-eval *_results.json under {path}')
    return sorted(files, key=lambda f: (osp.basename(f), f))


def read_scores(path: str) -> Dict[str, Dict[str, float]]:
    """task -> {metric: value} (filter suffix dropped; later runs of a task replace earlier ones)."""
    scores: Dict[str, Dict[str, float]] = {}
    for f in result_files(path):
        with open(f) as fh:
            results = json.load(fh).get('results', {})
        for task, metrics in results.items():
            scores[task] = {k.split(',')[0]: v for k, v in metrics.items()
                            if isinstance(v, (int, float)) and '_stderr' not in k and k != 'alias'}
    return scores


def benchmark_score(scores: Dict[str, Dict[str, float]], tasks: Sequence[str],
                    metric: str) -> Optional[float]:
    for task in tasks:
        if task in scores and metric in scores[task]:
            v = float(scores[task][metric])
            return 100.0 * v if abs(v) <= 1.0 else v
    return None


def build_table(rows: Sequence[Tuple[str, Dict[str, Dict[str, float]]]]) -> Tuple[List[str], List[List[str]]]:
    """(header, rows of cells): the benchmarks any row has, grouped, each group followed by its average."""
    present = [key for key, (tasks, metric) in BENCHMARKS.items()
               if any(benchmark_score(s, tasks, metric) is not None for _, s in rows)]
    groups: 'OrderedDict[str, List[Tuple[str, str]]]' = OrderedDict()
    for key in present:
        groups.setdefault(key[0], []).append(key)
    header = ['Encoder']
    for group, keys in groups.items():
        header += [f'{group}: {col}' for _, col in keys] + [f'{group} avg']
    table = []
    for name, scores in rows:
        cells = [name]
        for keys in groups.values():
            vals = [benchmark_score(scores, *BENCHMARKS[k]) for k in keys]
            cells += ['–' if v is None else f'{v:.2f}' for v in vals]
            cells.append('–' if any(v is None for v in vals) else f'{sum(vals) / len(vals):.2f}')
        table.append(cells)
    return header, table


def to_markdown(header: Sequence[str], table: Sequence[Sequence[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(r) + ' |' for r in table]
    return '\n'.join(lines) + '\n'
