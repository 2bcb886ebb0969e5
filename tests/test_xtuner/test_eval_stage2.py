"""Stage-2 evaluation: hand-checked metric values, RefCOCO files, a tiny XTuner LLaVA model, and the tool."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image
from repo_tools import load_tool

from granvit_mm.toy.tiny_llm import region_chat_corpus, toy_records, train_tokenizer
from granvit_mm.xtuner.stage2_eval import (build_eval_dataset, evaluate_stage2, format_metrics, load_stage2,
                                           load_stage2_state_dict, predict, score)

W, H = 40, 30
# normalised by the padded side 40: A = [0.05, 0.075, 0.5, 0.625], B = [0.25, 0.0, 1.0, 0.75]
RECORD = dict(image='a.png', width=W, height=H, source='test', caption='a picture',
              regions=[dict(bbox=[2, 3, 20, 25], caption='a red square'),
                       dict(bbox=[10, 0, 40, 30], caption='a blue circle')])


@pytest.fixture(scope='module')
def tokenizer():
    return train_tokenizer(region_chat_corpus(toy_records(16)), vocab_size=400)


@pytest.fixture(scope='module')
def synth_dir(tmp_path_factory):
    from granvit_mm.toy.gran_synth import generate
    out = str(tmp_path_factory.mktemp('gran_synth'))
    generate(out, num_train=4, num_val=3, image_size=96, seed=5)
    return out


def _write(root, records, name='val.jsonl'):
    with open(osp.join(root, name), 'w') as f:
        for r in records:
            f.write(json.dumps(r) + '\n')
    return name


@pytest.fixture()
def one_image(tmp_path):
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(tmp_path / 'a.png')
    _write(tmp_path, [RECORD])
    return str(tmp_path)


def _scripted(answers):
    """answer_fn that answers each question from a {question substring: answer} table."""
    def answer(pixel_values, questions):
        assert pixel_values.shape == (3, 16, 16)
        return [next(a for key, a in answers.items() if key in q) for q in questions]
    return answer


def _oracle(dataset):
    """answer_fn that gives the ground truth (looked up by question; questions are unique per image here)."""
    table = {t['question']: t['answer'] for i in range(len(dataset)) for t in dataset[i]['tasks']}
    return lambda pixel_values, questions: [table[q] for q in questions]


def test_ground_truth_answers_score_perfectly(one_image, tokenizer):
    ds = build_eval_dataset(tokenizer, 'val.jsonl', data_root=one_image, image_size=16)
    samples = predict(ds, _oracle(ds))
    assert [t['task'] for t in samples[0]['tasks']] == ['bbox2caption'] * 2 + ['caption2bbox'] * 2
    m = score(samples)
    assert m == {'caption2bbox/acc_iou0.5': 100.0, 'caption2bbox/miou': pytest.approx(100.0),
                 'caption2bbox/num_unparsed': 0, 'caption2bbox/num': 2,
                 'bbox2caption/rouge_l': 100.0, 'bbox2caption/num': 2}


def test_hand_checked_partial_answers(one_image, tokenizer):
    ds = build_eval_dataset(tokenizer, 'val.jsonl', data_root=one_image, image_size=16)
    answers = {
        'describes: a red square': '[0.050, 0.075, 0.500, 0.625]',  # IoU 1
        'describes: a blue circle': '[0.250, 0.000, 0.500, 0.750]',  # IoU 0.25/0.75 = 1/3: a miss
        '[0.050, 0.075, 0.500, 0.625]': 'a red square',  # ROUGE-L 1
        '[0.250, 0.000, 1.000, 0.750]': 'a red',  # vs "a blue circle": LCS 1, P 1/2, R 1/3 -> F 0.4
    }
    m = score(predict(ds, _scripted(answers)))
    assert m['caption2bbox/acc_iou0.5'] == pytest.approx(50.0)
    assert m['caption2bbox/miou'] == pytest.approx((1 + 1 / 3) / 2 * 100)
    assert m['bbox2caption/rouge_l'] == pytest.approx((1 + 0.4) / 2 * 100)
    # IoU exactly 0.5 is a hit; an answer that is not a box is a counted miss
    answers['describes: a blue circle'] = '[0.250, 0.000, 0.625, 0.750]'
    answers['describes: a red square'] = 'somewhere on the left'
    m = score(predict(ds, _scripted(answers)))
    assert m['caption2bbox/acc_iou0.5'] == 50.0 and m['caption2bbox/num_unparsed'] == 1
    assert m['caption2bbox/miou'] == pytest.approx(25.0)
    # wrong boxes and captions everywhere: 0
    wrong = {'describes:': '[0.600, 0.800, 0.700, 0.900]', 'coordinates': 'nothing'}
    m = score(predict(ds, _scripted(wrong)))
    assert (m['caption2bbox/acc_iou0.5'], m['caption2bbox/miou'], m['bbox2caption/rouge_l']) == (0, 0, 0)
    lines = list(format_metrics(m))
    assert lines[0].startswith('Caption2Bbox  Acc@IoU0.5   0.00  mIoU   0.00  (2 questions')


def test_each_image_is_asked_its_own_questions(tmp_path, tokenizer):
    """Teeth: two images, two records: every question goes with its own image's pixels and its answers land on
    its own sample (asking every question about image 0 fails)."""
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(tmp_path / 'a.png')
    Image.fromarray(np.full((H, W, 3), 220, np.uint8)).save(tmp_path / 'b.png')
    other = dict(RECORD, image='b.png', regions=[dict(bbox=[0, 0, 10, 10], caption='a green star')])
    _write(tmp_path, [RECORD, other])
    ds = build_eval_dataset(tokenizer, 'val.jsonl', data_root=str(tmp_path), image_size=16)
    asked = []

    def brightness(pixel_values, questions):  # answers name the image they were asked about
        asked.append((round(float(pixel_values.mean()), 3), list(questions)))
        return [f'{asked[-1][0]} {q}' for q in questions]

    samples = predict(ds, brightness)
    assert [s['img_path'].rsplit('/', 1)[-1] for s in samples] == ['a.png', 'b.png']
    (dark, dark_qs), (bright, bright_qs) = asked
    assert dark < bright
    assert any('a red square' in q for q in dark_qs) and any('a blue circle' in q for q in dark_qs)
    assert any('a green star' in q for q in bright_qs) and not any('a green star' in q for q in dark_qs)
    assert not any('a red square' in q for q in bright_qs)
    assert samples[0]['pred_texts'] == [f'{dark} {t["question"]}' for t in samples[0]['tasks']]
    assert samples[1]['pred_texts'] == [f'{bright} {t["question"]}' for t in samples[1]['tasks']]
    assert len(samples[0]['tasks']) == 4 and len(samples[1]['tasks']) == 2


def test_progress_bar_counts_the_images(one_image, tokenizer, monkeypatch):
    from granvit_mm.xtuner import stage2_eval
    ticks = []

    class Bar:
        def update(self):
            ticks.append(1)

    monkeypatch.setattr(stage2_eval, '_progress', lambda n: ticks.append(('total', n)) or Bar())
    ds = build_eval_dataset(tokenizer, 'val.jsonl', data_root=one_image, image_size=16)
    predict(ds, _oracle(ds), progress=True)
    assert ticks == [('total', 1), 1]
    predict(ds, _oracle(ds))  # no bar unless asked
    assert len(ticks) == 2


def test_refcoco_gran_files(tmp_path, tokenizer):
    """A RefCOCO file from the converter: every expression is a question, repeated expressions included."""
    from granvit_mm.datasets.converters import convert_refcoco, write_records
    Image.fromarray(np.full((60, 80, 3), 50, np.uint8)).save(tmp_path / '1.jpg')
    instances = dict(images=[dict(id=1, file_name='1.jpg', width=80, height=60)],
                     annotations=[dict(id=10, image_id=1, bbox=[0, 0, 40, 30]),
                                  dict(id=11, image_id=1, bbox=[40, 30, 40, 30])])
    refs = [dict(split='val', image_id=1, ann_id=10, sentences=[dict(sent='left guy'), dict(sent='man')]),
            dict(split='val', image_id=1, ann_id=11, sentences=[dict(sent='right guy'), dict(sent='man')])]
    write_records(convert_refcoco(refs, instances, splits=['val']), str(tmp_path / 'refcoco_val.jsonl'))
    ds = build_eval_dataset(tokenizer, 'refcoco_val.jsonl', data_root=str(tmp_path), image_size=16,
                            tasks=['caption2bbox'])
    item = ds[0]
    assert [t['answer'] for t in item['tasks']] == ['[0.000, 0.000, 0.500, 0.375]'] * 2 + \
        ['[0.500, 0.375, 1.000, 0.750]'] * 2
    # "man" names both boxes: the first box is right for one of the two questions
    m = score(predict(ds, lambda px, qs: ['[0.000, 0.000, 0.500, 0.375]' if 'left' in q or 'man' in q else
                                          '[0.500, 0.375, 1.000, 0.750]' for q in qs]))
    assert m['caption2bbox/num'] == 4 and m['caption2bbox/acc_iou0.5'] == 75.0
    assert m['bbox2caption/num'] == 0 and list(format_metrics(m))[-1].startswith('Caption2Bbox')
    unique = build_eval_dataset(tokenizer, 'refcoco_val.jsonl', data_root=str(tmp_path), image_size=16,
                                tasks=['caption2bbox'], unique_grounding=True)
    assert [t['question'].split(': ')[-1] for t in unique[0]['tasks']] == ['left guy', 'right guy']


# ---- a tiny XTuner LLaVA model --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_parts(tmp_path_factory, tiny_llm_dir, encoder_dir):
    """The shared stage-2 assets (conftest.py): a tiny Qwen2 and a tiny stage-1 GranViT exported to HF."""
    return dict(llm=tiny_llm_dir, vit=encoder_dir, root=tmp_path_factory.mktemp('tiny_stage2'))


def _config(parts, synth_dir):
    path = parts['root'] / 'stage2_tiny.py'
    path.write_text(f'''
from transformers import AutoModelForCausalLM
from transformers import AutoTokenizer
from transformers import SiglipVisionModel
from granvit_mm.xtuner.gran_llava_dataset import GranLLaVADataset
from granvit_mm.xtuner.llava_model import GranViTLLaVAModel

llm_dir = {parts["llm"]!r}
tokenizer = dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=llm_dir)
model = dict(type=GranViTLLaVAModel, freeze_llm=False, use_activation_checkpointing=False,
             llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_dir),
             projector_path={parts["vit"] + '/projector'!r},
             visual_encoder=dict(type=SiglipVisionModel.from_pretrained,
                                 pretrained_model_name_or_path={parts["vit"]!r}))
train_dataloader = dict(dataset=dict(type=GranLLaVADataset, data_root={synth_dir!r}, tokenizer=tokenizer,
                                     ann_file='annotations/train.jsonl', data_prefix=dict(img_path='images/'),
                                     image_size=64))
val_ann_file = 'annotations/val.jsonl'
''')
    return str(path)


@pytest.fixture(scope='module')
def trained(tiny_parts, synth_dir):
    """The config, and a checkpoint as xtuner train writes it (state_dict of the trainable parts)."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER
    cfg_file = _config(tiny_parts, synth_dir)
    model = BUILDER.build(Config.fromfile(cfg_file).model)
    torch.manual_seed(1)
    for p in model.projector.parameters():
        p.data.normal_(0, 0.5)  # "trained": differs from any fresh build
    ckpt = str(tiny_parts['root'] / 'iter_10.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), ckpt)
    return dict(config=cfg_file, checkpoint=ckpt, model=model)


def test_evaluate_stage2_with_a_tiny_model(trained, synth_dir):
    from mmengine.config import Config
    from xtuner.registry import BUILDER
    model = trained['model'].eval()
    tokenizer = BUILDER.build(Config.fromfile(trained['config']).tokenizer)
    data = dict(ann_file='annotations/val.jsonl', data_root=synth_dir, data_prefix=dict(img_path='images/'))
    m = evaluate_stage2(model, tokenizer, data, max_new_tokens=12)
    n_regions = sum(len(json.loads(line)['regions']) for line in open(f'{synth_dir}/annotations/val.jsonl'))
    assert m['caption2bbox/num'] == m['bbox2caption/num'] == n_regions
    assert 0 <= m['caption2bbox/acc_iou0.5'] <= 100 and 0 <= m['bbox2caption/rouge_l'] <= 100
    assert evaluate_stage2(model, tokenizer, data, max_new_tokens=12) == m  # greedy: deterministic


def test_load_stage2_restores_the_trained_weights(trained):
    model, tokenizer = load_stage2(trained['config'], trained['checkpoint'])
    trained_projector = trained['model'].projector.state_dict()
    for name, value in model.projector.state_dict().items():
        assert torch.equal(value, trained_projector[name]), name
    assert tokenizer.decode(tokenizer.encode('a red circle')) == 'a red circle'
    with pytest.raises(KeyError, match='no projector'):
        torch.save(dict(state_dict={'llm.x': torch.zeros(1)}), trained['checkpoint'] + '.bad')
        load_stage2(trained['config'], trained['checkpoint'] + '.bad')


def test_pickled_checkpoints_need_trust(tmp_path):
    from mmengine.logging import HistoryBuffer
    path = str(tmp_path / 'mmengine_style.pth')
    torch.save(dict(state_dict={'projector.w': torch.ones(2)}, message_hub=dict(log=HistoryBuffer())), path)
    with pytest.raises(RuntimeError, match='--trust-checkpoint'):
        load_stage2_state_dict(path)
    assert torch.equal(load_stage2_state_dict(path, trust=True)['projector.w'], torch.ones(2))
    with pytest.raises(RuntimeError, match='DeepSpeed'):
        load_stage2_state_dict(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_stage2_state_dict(str(tmp_path / 'nope.pth'))


def test_eval_tool(trained, synth_dir, tmp_path, capsys):
    tool = load_tool('tools/analysis_tools/eval_stage2.py')
    out = str(tmp_path / 'eval.json')
    # an LLM whose greedy answers depend on the image, so that an answer about the wrong image shows
    state = torch.load(trained['checkpoint'], weights_only=True)['state_dict']
    g = torch.Generator().manual_seed(0)
    for k in [k for k in state if k.startswith('llm.') and state[k].dim() >= 2]:
        state[k] = torch.randn(state[k].shape, generator=g) * 0.3
    trained = dict(trained, checkpoint=str(tmp_path / 'iter_20.pth'))
    torch.save(dict(state_dict=state), trained['checkpoint'])
    metrics = tool.main([trained['config'], trained['checkpoint'], '--max-images', '2', '--max-new-tokens',
                         '8', '--device', 'cpu', '--out', out])
    printed = capsys.readouterr().out
    assert 'Caption2Bbox  Acc@IoU0.5' in printed and 'Bbox2Caption  ROUGE-L' in printed
    saved = json.load(open(out))
    assert saved['metrics'] == metrics and saved['ann_file'] == 'annotations/val.jsonl'
    preds = [json.loads(line) for line in open(str(tmp_path / 'eval.predictions.jsonl'))]
    assert len(preds) == metrics['caption2bbox/num'] + metrics['bbox2caption/num']
    assert {p['task'] for p in preds} == {'caption2bbox', 'bbox2caption'}
    # the same answers as the library function on the same model
    data = dict(ann_file='annotations/val.jsonl', data_root=synth_dir, data_prefix=dict(img_path='images/'))
    model, tokenizer = load_stage2(trained['config'], trained['checkpoint'])
    assert evaluate_stage2(model, tokenizer, data, max_new_tokens=8, max_images=2) == metrics
    # an independent reference: every saved answer is what the model says to that one question about that
    # image alone, and the metrics follow from the saved rows by the formulas (IoU by hand, ROUGE-L per row)
    from granvit_mm.core.image_input import to_model_input
    from granvit_mm.evaluation.metrics.rouge import rouge_l
    from granvit_mm.xtuner.llava_model import greedy_answers
    assert len({p['image'] for p in preds}) == 2
    for p in preds:
        pixels = torch.from_numpy(to_model_input(np.asarray(Image.open(p['image']).convert('RGB')), 64)[0])
        assert greedy_answers(model, tokenizer, pixels[None], [[p['question']]], max_new_tokens=8) == \
            [[p['prediction']]], p

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    def as_box(text):
        try:
            box = json.loads(text)
            return [float(v) for v in box] if len(box) == 4 else None
        except (ValueError, TypeError):
            return None

    grounding = [p for p in preds if p['task'] == 'caption2bbox']
    ious = [iou(as_box(p['prediction']), as_box(p['answer'])) if as_box(p['prediction']) else 0.0
            for p in grounding]
    assert metrics['caption2bbox/acc_iou0.5'] == pytest.approx(100 * sum(v >= 0.5 for v in ious) / len(ious))
    assert metrics['caption2bbox/miou'] == pytest.approx(100 * sum(ious) / len(ious), abs=1e-4)
    captions = [p for p in preds if p['task'] == 'bbox2caption']
    assert metrics['bbox2caption/rouge_l'] == pytest.approx(
        100 * sum(rouge_l(p['prediction'], p['answer']) for p in captions) / len(captions))
