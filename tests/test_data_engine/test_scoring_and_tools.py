"""The toy's scores (box matching, ROUGE-L of matched boxes, OCR character accuracy) on hand-made records, and
the benchmark script's CPU mode at its smallest."""
import pytest


def _rec(regions, image='a.png'):
    return {image: dict(image=image, regions=[dict(bbox=b, caption=c, kind=k) for b, c, k in regions])}


def test_score_matches_boxes_one_to_one_and_reads_pages_in_order():
    from granvit_mm.data_engine.scoring import edit_distance, reading_order, score
    truth = _rec([([0, 0, 10, 10], 'a red circle', 'object'), ([20, 20, 40, 40], 'a blue square', 'object')])
    pred = _rec([([0, 0, 10, 9], 'a red circle', 'object'), ([1, 0, 10, 10], 'a red circle', 'object'),
                 ([60, 60, 70, 70], 'x', 'object')])
    s = score(pred, truth)
    assert (s['boxes_matched'], s['boxes_truth'], s['boxes_pred']) == (1, 2, 3)
    assert s['box_recall'] == 50 and s['box_precision'] == pytest.approx(100 / 3)
    assert s['region_caption_rouge_l'] == 100
    page = _rec([([0, 0, 30, 10], 'hello world', 'text'), ([0, 20, 30, 30], 'second line', 'text')], 'p.png')
    words = _rec([([16, 1, 30, 9], 'world', 'text'), ([0, 0, 14, 10], 'hello', 'text'),
                  ([0, 20, 30, 30], 'secnd line', 'text')], 'p.png')
    assert reading_order(words['p.png']['regions']) == 'hello world\nsecnd line'
    s = score(words, page)
    assert s['ocr_pages'] == 1 and s['ocr_char_accuracy'] == pytest.approx(100 * (1 - 1 / 23))
    assert edit_distance('kitten', 'sitting') == 3
    assert score({}, truth)['images_written'] == 0 and score({}, truth)['box_recall'] == 0


def test_ocr_stage_reads_gransynth_text_pages(synth_root):
    import json

    from granvit_mm.data_engine import DecodeImages, RapidOCRText
    from granvit_mm.data_engine.item import make_item
    from granvit_mm.data_engine.scoring import score
    recs = [r for r in map(json.loads,
                           open(f'{synth_root}/annotations/val.jsonl')) if r['source'] != 'gran_synth']
    items = [make_item(i, f'{synth_root}/images/{r["image"]}', r['image'],
                       r['source']) for i, r in enumerate(recs[:2])]
    DecodeImages()(items)
    RapidOCRText(sources=['gran_synth_ocr'])(items)
    assert all(reg['kind'] == 'text' and reg['caption'] for it in items for reg in it['regions'])
    pred = {it['image']: it for it in items}
    s = score(pred, {r['image']: r for r in recs[:2]})
    assert s['ocr_pages'] == 2 and s['ocr_char_accuracy'] > 90, s


def test_benchmark_cpu_mode_at_its_smallest():
    from repo_tools import load_tool
    bench = load_tool('tools/analysis_tools/benchmark_data_engine.py')
    rep = bench.main(['--tiny', '--images', '8', '--ocr-pages', '1', '--no-routes', '--vlm-batch', '2',
                      '--global-tokens', '4', '--region-tokens', '2'])
    rates = rep['stages_images_per_s']
    assert {'ingest', 'filters', 'boxes (tiny RetinaNet, random)', 'ocr (RapidOCR PP-OCRv4)',
            'captions (Qwen2-VL-tiny shape, random)'} <= set(rates) and all(v > 0 for v in rates.values())
    assert rep['captioner']['image_tokens'] == 256 and not rep['skipped']
