"""ROUGE-L and grounding metrics on hand-computed cases."""
import pytest

from granvit_mm.evaluation.metrics import GroundingMetric, RegionCaptionMetric, lcs_length, rouge_l
from granvit_mm.structures import GranDataSample


def test_lcs_and_rouge():
    assert lcs_length('a b c d'.split(), 'a c d e'.split()) == 3
    assert rouge_l('A red circle.', 'a red circle') == 1.0
    # pred 'a blue circle' vs ref 'a red circle near a star': lcs 2 ('a circle'), p 2/3, r 2/6
    assert rouge_l('a blue circle', 'a red circle near a star') == pytest.approx(2 * (2 / 3) * (1 / 3) / (1))
    assert rouge_l('', 'x') == 0.0 and rouge_l('zzz', 'x') == 0.0


def _sample(tasks, preds):
    s = GranDataSample()
    s.tasks = tasks
    s.pred_texts = preds
    return s


def test_region_caption_metric_scores_only_bbox2caption():
    metric = RegionCaptionMetric()
    tasks = [dict(task='bbox2caption', question='q', answer='a red circle', box=[0, 0, 1, 1], region=0),
             dict(task='global_caption', question='q', answer='whatever', box=None, region=-1),
             dict(task='bbox2caption', question='q', answer='a blue star', box=[0, 0, 1, 1], region=1)]
    metric.process({}, [_sample(tasks, ['a red circle', 'nothing', 'a green ring']).to_dict()])
    out = metric.evaluate(1)
    assert out['bbox2caption/rouge_l'] == pytest.approx(100 * (1.0 + 1 / 3) / 2)
    assert out['bbox2caption/num'] == 2


def test_grounding_metric_counts_unparsed_as_misses():
    metric = GroundingMetric()
    gt = [0.0, 0.0, 0.5, 0.5]
    tasks = [dict(task='caption2bbox', question='q', answer='[0.000, 0.000, 0.500, 0.500]', box=gt, region=i)
             for i in range(4)]
    preds = ['[0.000, 0.000, 0.500, 0.500]',  # IoU 1
             'it is at [0.000, 0.000, 0.500, 0.250]',  # IoU 0.5
             'no box here',  # unparsed -> miss
             '[0.500, 0.500, 0.400, 0.900]']  # degenerate -> IoU 0
    metric.process({}, [_sample(tasks, preds)])  # a GranDataSample works too
    out = metric.evaluate(1)
    assert out['caption2bbox/acc_iou0.5'] == pytest.approx(50.0)
    assert out['caption2bbox/miou'] == pytest.approx(100 * 1.5 / 4)
    assert out['caption2bbox/num_unparsed'] == 1 and out['caption2bbox/num'] == 4
