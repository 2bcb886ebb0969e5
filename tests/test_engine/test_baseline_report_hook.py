from types import SimpleNamespace

from granvit_mm.engine.hooks import BaselineReportHook


def test_logs_value_baseline_and_gap():
    lines = []
    runner = SimpleNamespace(logger=SimpleNamespace(info=lines.append))
    hook = BaselineReportHook('bbox2caption/rouge_l', 34.4, 'the image-blind baseline')
    hook.after_val_epoch(runner, {'bbox2caption/rouge_l': 60.0})
    hook.after_val_epoch(runner, {'other': 1.0})  # metric absent: nothing to say
    hook.after_val_epoch(runner, None)
    assert lines == ['[granvit] val bbox2caption/rouge_l 60.00 vs 34.40 for the image-blind baseline: '
                     '+25.60 points from what the ViT sees']
