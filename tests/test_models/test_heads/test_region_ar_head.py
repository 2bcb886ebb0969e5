"""RegionARHead: XTuner-identical chat encoding, shared-prefix packing == separate sequences, frozen LLM."""
import pytest
import torch

from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX, QWEN_CHAT
from granvit_mm.core.prompts import bbox2caption_question, global_caption_question
from granvit_mm.models.heads import RegionARHead
from granvit_mm.models.utils import collate_packed, pack_turns, shared_prefix_mask
from granvit_mm.toy.tiny_llm import save_tiny_llm

TASKS = [
    [dict(task='global_caption', question=global_caption_question(), answer='an image with a red circle'),
     dict(task='bbox2caption', question=bbox2caption_question([0.1, 0.2, 0.5, 0.6]), answer='a red circle'),
     dict(task='bbox2caption', question=bbox2caption_question([0.5, 0.5, 0.9, 0.95]),
          answer='a blue star and a green ring')],
    [dict(task='bbox2caption', question=bbox2caption_question([0.0, 0.0, 1.0, 1.0]), answer='a white square'),
     dict(task='bbox2caption', question=bbox2caption_question([0.25, 0.3, 0.4, 0.7]), answer='a black ring')],
]


@pytest.fixture(scope='module')
def llm_dir(tmp_path_factory):
    return save_tiny_llm(str(tmp_path_factory.mktemp('tiny_llm')), vocab_size=400)


def _head(llm_dir, attn='sdpa', **kwargs):
    return RegionARHead(llm_path=llm_dir, attn_implementation=attn, **kwargs)


def test_chat_encoding_matches_xtuner(llm_dir):
    """Our turn pieces are token-for-token what XTuner's LLaVA pipeline builds with qwen_chat."""
    head = _head(llm_dir)
    q, a = TASKS[0][1]['question'], TASKS[0][1]['answer']
    ids, labels = head.chat.turn(q, a)
    ours_ids = head.chat.prefix_ids + [IMAGE_TOKEN_INDEX] + ids
    ours_labels = [IGNORE_INDEX] * (len(head.chat.prefix_ids) + 1) + labels
    tok = head.tokenizer
    assert tok.decode(head.chat.prefix_ids) == '<|im_start|>user\n'
    assert tok.decode(ids) == f'\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n'
    assert tok.decode([t for t in labels if t != IGNORE_INDEX]) == f'{a}<|im_end|>'
    xtuner_utils = pytest.importorskip('xtuner.utils')
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.dataset.utils import encode_fn
    assert dict(xtuner_utils.PROMPT_TEMPLATE.qwen_chat) == QWEN_CHAT
    example = template_map_fn(dict(conversation=[dict(input=f'<image>\n{q}', output=a)]),
                              xtuner_utils.PROMPT_TEMPLATE.qwen_chat)
    enc = encode_fn(example, tok, max_length=4096, with_image_token=True)
    assert enc['input_ids'] == ours_ids
    assert enc['labels'] == ours_labels


def _segment_losses(out, batch):
    """{(image, segment): per-token CE of that segment's answer tokens}."""
    seg = batch['segment_ids'][:, 1:][out['valid']]
    owner = torch.arange(batch['segment_ids'].shape[0])[:, None].expand_as(out['valid'])[out['valid']]
    keys = set(zip(owner.tolist(), seg.tolist()))
    return {(b, s): out['loss'][(owner == b) & (seg == s)] for b, s in keys}


@pytest.mark.parametrize('attn', ['eager', 'sdpa'])
def test_packed_equals_separate(llm_dir, attn):
    """Per-answer CE of the packed batch == CE of each turn as its own sequence (float32, atol 1e-5)."""
    head = _head(llm_dir, attn)
    torch.manual_seed(0)
    n_vis = 6
    visual = torch.randn(len(TASKS), n_vis, head.hidden_size)
    batch = head.build_batch(TASKS, n_vis)
    assert batch['input_ids'].shape[0] == 2 and (batch['segment_ids'][1] == -1).any()  # right padding
    packed = _segment_losses(head.token_losses(visual, batch), batch)
    assert len(packed) == 5
    for b, tasks in enumerate(TASKS):
        for k, t in enumerate(tasks):
            alone = head.build_batch([[t]], n_vis)
            single = head.token_losses(visual[b:b + 1], alone)['loss']
            # the separate sequence is an ordinary causal sequence: check it against the plain HF forward
            ref_emb = head.embed(visual[b:b + 1], alone['input_ids'])
            logits = head.llm(inputs_embeds=ref_emb).logits[0, :-1]
            labels = alone['labels'][0, 1:]
            keep = labels != IGNORE_INDEX
            ref = torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction='none')
            torch.testing.assert_close(single, ref, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(packed[(b, k + 1)], single, atol=1e-5, rtol=1e-5)


def test_plain_causal_packing_would_differ(llm_dir):
    """Guard that the test above has teeth: without the segment mask the later turns' losses change."""
    head = _head(llm_dir, 'eager')
    torch.manual_seed(0)
    visual = torch.randn(1, 6, head.hidden_size)
    batch = head.build_batch(TASKS[:1], 6)
    good = head.token_losses(visual, batch)['loss']
    batch_plain = dict(batch, segment_ids=torch.zeros_like(batch['segment_ids']))
    batch_plain['position_ids'] = torch.arange(batch['input_ids'].shape[1])[None]
    bad = head.token_losses(visual, batch_plain)['loss']
    assert (good - bad).abs().max() > 1e-3


def test_mask_layout():
    seq = pack_turns([5, 6], 2, [([1, 2], [IGNORE_INDEX, 2]), ([3], [3])])
    assert seq['segment_ids'] == [0, 0, 0, 0, 1, 1, 2]
    assert seq['position_ids'] == [0, 1, 2, 3, 4, 5, 4]
    batch = collate_packed([seq, pack_turns([5], 1, [([1], [1])])])
    allowed = shared_prefix_mask(batch['segment_ids'])[:, 0] == 0
    assert allowed[0, 6].tolist() == [True, True, True, True, False, False, True]  # turn 2 skips turn 1
    assert allowed[0, 5].tolist() == [True] * 6 + [False]
    assert allowed[1, 4].tolist() == [False] * 4 + [True] + [False] * 2  # padding sees itself only


def test_max_length_drops_trailing_turns():
    seq = pack_turns([5], 2, [([1, 2], [1, 2]), ([3, 4], [3, 4]), ([5], [5])], max_length=7)
    assert seq['segment_ids'] == [0, 0, 0, 1, 1, 2, 2]  # the first turn beyond the limit stops packing
    seq = pack_turns([5], 2, [([1, 2, 3, 4, 5, 6], [1] * 6)], max_length=4)
    assert len(seq['input_ids']) == 9  # one turn is always kept
    seq = pack_turns([5], 2, [([1, 2], [1, 2]), ([3, 4], [3, 4])], max_length=5)
    assert seq['segment_ids'] == [0, 0, 0, 1, 1]  # the second turn is dropped too when it is the one over


def test_collate_pads_and_the_mask_keeps_its_dtype():
    batch = collate_packed([pack_turns([5], 1, [([7, 8], [7, 8])]), pack_turns([5], 1, [([9], [9])])])
    assert batch['input_ids'].tolist() == [[5, IMAGE_TOKEN_INDEX, 7, 8], [5, IMAGE_TOKEN_INDEX, 9, 0]]
    assert batch['labels'][1].tolist() == [IGNORE_INDEX, IGNORE_INDEX, 9, IGNORE_INDEX]
    assert batch['position_ids'][1].tolist() == [0, 1, 2, 0] and batch['segment_ids'][1, -1] == -1
    assert all(v.dtype == torch.long for v in batch.values())
    mask = shared_prefix_mask(batch['segment_ids'], torch.bfloat16)
    assert mask.dtype == torch.bfloat16 and float(mask.min()) == torch.finfo(torch.bfloat16).min
    with pytest.raises(ValueError, match='turn 1: 2 ids but 1 labels'):
        pack_turns([5], 1, [([1], [1]), ([1, 2], [2])])


def test_frozen_llm_grads_and_state(llm_dir):
    head = _head(llm_dir)
    head.train()
    assert not head.llm.training and all(not p.requires_grad for p in head.llm.parameters())
    visual = torch.randn(2, 6, head.hidden_size, requires_grad=True)
    loss = head.loss(visual, [_Sample(t) for t in TASKS])
    assert set(loss) == {'loss_caption', 'acc_caption'}
    loss['loss_caption'].backward()
    assert visual.grad is not None and visual.grad.abs().sum() > 0
    assert all(p.grad is None for p in head.llm.parameters())
    state = head.state_dict()
    assert not any(k.startswith('llm.') for k in state)
    head.load_state_dict(state, strict=True)  # the missing LLM weights are tolerated
    kept = _head(llm_dir, save_llm=True).state_dict()
    assert any(k.startswith('llm.') for k in kept)


def test_gradient_checkpointing_keeps_eval_and_grads(llm_dir):
    head = _head(llm_dir, gradient_checkpointing=True)
    head.train()
    assert head.llm.get_decoder().gradient_checkpointing
    assert not any(m.training for m in head.llm.get_decoder().children())
    torch.manual_seed(0)
    visual = torch.randn(2, 6, head.hidden_size, requires_grad=True)
    loss = head.loss(visual, [_Sample(t) for t in TASKS])['loss_caption']
    loss.backward()
    ref_visual = visual.detach().clone().requires_grad_(True)
    head.gradient_checkpointing = False
    head.train()
    head.llm.get_decoder().training = False
    ref = head.loss(ref_visual, [_Sample(t) for t in TASKS])['loss_caption']
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(visual.grad, ref_visual.grad, atol=1e-6, rtol=1e-5)


def test_generate_returns_one_answer_per_task(llm_dir):
    head = _head(llm_dir)
    head.eval()
    visual = torch.randn(2, 6, head.hidden_size)
    answers = head.predict(visual, [_Sample(t) for t in TASKS], max_new_tokens=4)
    assert [len(a) for a in answers] == [3, 2]
    assert all(isinstance(s, str) for a in answers for s in a)
    # greedy and batched == one by one (left padding and the image placement are right)
    alone = head.predict(visual[1:], [_Sample(TASKS[1][:1])], max_new_tokens=4)
    assert alone[0][0] == answers[1][0]


class _Sample:
    def __init__(self, tasks):
        self.tasks = tasks
