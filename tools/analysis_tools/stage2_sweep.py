"""Many toy stage-2 variants fast: the XTuner stage-2 step replayed in plain torch on prepared tokens.

Why: finding what keeps the toy's Caption2Bbox at the box prior takes dozens of stage-2 runs, and one
``xtuner train`` + ``eval_stage2.py`` costs minutes on 2 cores. This tool replays exactly the same step
(the conversations ``GranLLaVADataset`` tokenises, the frozen tower's ``hidden_states[-1]`` through the
2-layer projector into the LLM at the ``<image>`` placeholder, CE on the answer tokens, AdamW with linear
warm-up + cosine, gradient clipping at 1.0, per-epoch shuffles) and the same evaluation (every val region
asked as its own single-turn chat, greedy, scored like ``GroundingMetric``), but on tokens prepared once,
so a variant is seconds on a GPU. The winner is then confirmed with the real ``xtuner train`` config
(docs/stage2.md has both, side by side).

Two steps, so the second needs only torch, transformers, numpy, Pillow and OpenCV (a GPU machine):

    # 1. with the project's environment: tokenised conversations and eval prompts of a Gran dataset
    python tools/analysis_tools/stage2_sweep.py prep --data-root data/gran_synth --llm data/tiny_llm \
        --box-style decimal3 --out work_dirs/sweep/prep
    # 2. anywhere: train + evaluate variants (a JSON list of settings; see VARIANT below)
    python tools/analysis_tools/stage2_sweep.py run --prep-root work_dirs/sweep --llm llm=data/tiny_llm \
        --encoder granvit=work_dirs/granvit_pretrain_tiny/hf_encoder --variants '[{"encoder": "granvit"}]' \
        --out work_dirs/sweep/results.jsonl
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
import time

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from granvit_mm.core.box_text import parse_box  # noqa: E402
from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX  # noqa: E402

# One variant; every key may be overridden in --variants. Defaults = the tiny stage-2 config of now.
VARIANT = dict(encoder='granvit', llm='llm', projector='stage1', iters=1000, batch_size=16, lr=1e-3,
               warmup=50, eta_min_ratio=0.05, max_norm=1.0, weight_decay=0.0, seed=0, box_style='decimal3',
               prep='prep', max_new_tokens=40, feature_layer=-1,
               position_code=0.0)


# ---- 1. prep (project environment) ------------------------------------------------------------
def _pack(seqs):
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if seqs else np.zeros(0, np.int64)
    return flat, np.concatenate([[0], np.cumsum(lengths)])


def prep(args) -> None:
    from transformers import AutoTokenizer

    from granvit_mm.core.chat_format import QWEN_CHAT, ChatTemplateEncoder
    from granvit_mm.xtuner.gran_llava_dataset import GranLLaVADataset
    from granvit_mm.xtuner.stage2_eval import build_eval_dataset
    tok = AutoTokenizer.from_pretrained(args.llm)
    os.makedirs(args.out, exist_ok=True)
    train = GranLLaVADataset(args.train_ann, tok, data_root=args.data_root,
                             data_prefix=dict(img_path='images/'),
                             image_size=args.image_size, box_style=args.box_style, max_length=args.max_length,
                             tasks=json.loads(args.tasks), caption_turn=args.caption_turn)
    train.full_init()
    ids, labels, owner, images = [], [], [], []
    for i in range(len(train)):
        images.append(train.get_data_info(i)['img_path'])
        for draw in range(args.draws):
            item = train.text_item(i, draw)
            if item is not None:
                ids.append(item['input_ids'])
                labels.append(item['labels'])
                owner.append((i, draw))
    val = build_eval_dataset(tok, args.val_ann, data_root=args.data_root,
                             data_prefix=dict(img_path='images/'),
                             image_size=args.image_size, tasks=('caption2bbox', ), box_style=args.box_style)
    val.full_init()
    chat = ChatTemplateEncoder(tok, QWEN_CHAT)
    prompts, boxes, kinds, q_owner, val_images = [], [], [], [], []
    for i in range(len(val)):
        info = val.get_data_info(i)
        val_images.append(info['img_path'])
        item = val.text_item(i)
        for task in item['tasks']:
            prompts.append(chat.prompt_ids(task['question']))
            boxes.append(task['box'])
            kinds.append(info['region_kinds'][task['region']])
            q_owner.append(i)
    flat_ids, offsets = _pack(ids)
    flat_labels, _ = _pack(labels)
    flat_prompts, p_offsets = _pack(prompts)
    np.savez_compressed(osp.join(args.out, 'data.npz'), ids=flat_ids, labels=flat_labels, offsets=offsets,
                        owner=np.array(owner, np.int64), prompts=flat_prompts, prompt_offsets=p_offsets,
                        boxes=np.array(boxes, np.float64), q_owner=np.array(q_owner, np.int64))
    import hashlib

    from granvit_mm.datasets.jsonl_index import resolve_shards
    digest = hashlib.sha256()
    for shard in resolve_shards(args.train_ann, args.data_root):
        with open(shard, 'rb') as f:
            digest.update(f.read())
    meta = dict(data_root=args.data_root, train_sha256=digest.hexdigest(),
                train_images=[osp.relpath(p, args.data_root) for p in images],
                val_images=[osp.relpath(p, args.data_root) for p in val_images], kinds=kinds,
                prefix_ids=chat.prefix_ids, stop_ids=chat.stop_token_ids(), box_style=args.box_style,
                image_size=args.image_size, pad_id=tok.pad_token_id, draws=args.draws,
                caption_turn=args.caption_turn)
    with open(osp.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    print(f'[prep] {len(ids)} training conversations of {len(images)} images, {len(prompts)} val questions '
          f'-> {args.out}')


# ---- 2. run (torch + transformers) ------------------------------------------------------------
class Prepared:
    """The prepared tokens of one box style, and the images as model inputs."""

    def __init__(self, path: str):
        with open(osp.join(path, 'meta.json')) as f:
            self.meta = json.load(f)
        d = np.load(osp.join(path, 'data.npz'))
        self.d = {k: d[k] for k in d.files}

    def conversation(self, k: int):
        a, b = self.d['offsets'][k], self.d['offsets'][k + 1]
        return self.d['ids'][a:b], self.d['labels'][a:b]

    def prompt(self, q: int):
        a, b = self.d['prompt_offsets'][q], self.d['prompt_offsets'][q + 1]
        return self.d['prompts'][a:b]


def load_pixels(data_root: str, rel_paths, size: int) -> torch.Tensor:
    from PIL import Image

    from granvit_mm.core.image_input import to_model_input
    out = [to_model_input(np.asarray(Image.open(osp.join(data_root, p)).convert('RGB')), size)[0]
           for p in rel_paths]
    return torch.from_numpy(np.stack(out))


@torch.no_grad()
def encode(tower_dir: str, pixels: torch.Tensor, device: str, batch: int = 256,
           layer: int = -1) -> torch.Tensor:
    """``hidden_states[layer]`` of the frozen tower; -1 is the visual tokens stage 1 trained
    (core/visual_tokens), other layers are LLaVA's ``vision_feature_layer`` choice."""
    from transformers import SiglipVisionModel
    tower = SiglipVisionModel.from_pretrained(tower_dir).to(device).eval()
    out = [tower(pixels[i:i + batch].to(device), output_hidden_states=True).hidden_states[layer]
           for i in range(0, len(pixels), batch)]
    return torch.cat(out).float()


def position_code(n_tokens: int, dim: int) -> torch.Tensor:
    """A fixed 2D sine-cosine code of each patch's (row, col), unit RMS: a diagnostic that hands the LLM
    tokens whose position is explicit (``position_code`` = its scale relative to the tokens' RMS)."""
    side = int(round(n_tokens ** 0.5))
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing='ij')
    freqs = torch.arange(dim // 4) / max(1, dim // 4)
    freqs = 1.0 / (10.0 ** freqs)
    parts = [f(c.reshape(-1, 1).float() * freqs * math.pi / 2)
             for c in (rows, cols) for f in (torch.sin, torch.cos)]
    code = torch.cat(parts, -1)
    return code / code.pow(2).mean().sqrt()


def build_projector(vis_dim: int, llm_dim: int, init: str, tower_dir: str) -> torch.nn.Module:
    """XTuner's ``ProjectorModel`` (depth 2: Linear, GELU, Linear); ``stage1`` loads ``<tower>/projector``."""
    proj = torch.nn.Sequential(torch.nn.Linear(vis_dim, llm_dim), torch.nn.GELU(),
                               torch.nn.Linear(llm_dim, llm_dim))
    if init == 'stage1':
        from safetensors.torch import load_file
        path = osp.join(tower_dir, 'projector')
        files = [f for f in os.listdir(path) if f.endswith('.safetensors')]
        if not files:
            raise FileNotFoundError(f'no stage-1 projector weights in {path}')
        state = load_file(osp.join(path, files[0]))
        proj.load_state_dict({k.replace('model.', '', 1): v for k, v in state.items()})
    elif init != 'random':
        raise ValueError(f'projector must be stage1 or random, not {init!r}')
    return proj


def _embed_rows(llm, proj, vis, rows):
    """rows: (ids, labels, image index) -> inputs_embeds, labels, attention mask (right-padded), built as
    XTuner's ``prepare_inputs_labels_for_multimodal`` does: the image's projected tokens replace
    ``<image>``."""
    emb, device = llm.get_input_embeddings(), vis.device
    v = proj(vis[torch.as_tensor([r[2] for r in rows], device=device)])  # (B, N, C): one projector call
    n_vis = v.shape[1]
    lengths = [len(r[0]) - 1 + n_vis for r in rows]
    n = max(lengths)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    labels = torch.full((len(rows), n), IGNORE_INDEX, dtype=torch.long)
    is_vis = torch.zeros(len(rows), n, dtype=torch.bool)
    for b, (row_ids, row_labels, _) in enumerate(rows):
        at = int(np.flatnonzero(np.asarray(row_ids) == IMAGE_TOKEN_INDEX)[0])
        keep = np.r_[0:at, at + 1:len(row_ids)]
        pos = np.r_[0:at, at + n_vis:at + n_vis + len(row_ids) - at - 1]
        ids[b, pos] = torch.as_tensor(np.asarray(row_ids)[keep], dtype=torch.long)
        labels[b, pos] = torch.as_tensor(np.asarray(row_labels)[keep], dtype=torch.long)
        is_vis[b, at:at + n_vis] = True
    ids, labels, is_vis = ids.to(device), labels.to(device), is_vis.to(device)
    x = emb(ids).masked_scatter(is_vis[..., None], v.to(emb.weight.dtype))
    mask = (torch.arange(n, device=device)[None] < torch.as_tensor(lengths, device=device)[:, None]).long()
    return x, labels, mask


def _lr_factor(it: int, v: dict) -> float:
    if it < v['warmup']:
        return 0.01 + 0.99 * it / v['warmup']
    t = (it - v['warmup']) / max(1, v['iters'] - v['warmup'])
    return v['eta_min_ratio'] + (1 - v['eta_min_ratio']) * 0.5 * (1 + math.cos(math.pi * t))


def train(v: dict, prep: Prepared, llm, proj, vis) -> list:
    torch.manual_seed(v['seed'])
    params = [p for p in list(proj.parameters()) + list(llm.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=v['lr'], betas=(0.9, 0.999), weight_decay=v['weight_decay'])
    owner = prep.d['owner']
    by_image = {}
    for k, (img, draw) in enumerate(owner):
        by_image.setdefault(int(img), []).append(k)
    images = sorted(by_image)
    rng = np.random.default_rng(v['seed'])
    order, epoch, losses = [], 0, []
    llm.train()
    for it in range(v['iters']):
        while len(order) < v['batch_size']:  # a new shuffle, and the next task draw, each epoch
            order += [(i, epoch) for i in rng.permutation(images)]
            epoch += 1
        batch, order = order[:v['batch_size']], order[v['batch_size']:]
        rows = []
        for img, ep in batch:
            convs = by_image[int(img)]
            ids, labels = prep.conversation(convs[ep % len(convs)])
            rows.append((ids, labels, int(img)))
        for g in opt.param_groups:
            g['lr'] = v['lr'] * _lr_factor(it, v)
        x, y, mask = _embed_rows(llm, proj, vis, rows)
        loss = llm(inputs_embeds=x, attention_mask=mask, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, v['max_norm'])
        opt.step()
        losses.append(float(loss.detach()))
    llm.eval()
    return losses


@torch.no_grad()
def evaluate(v: dict, prep: Prepared, llm, proj, vis, tokenizer, batch: int = 512) -> dict:
    """Greedy answers to every val Caption2Bbox question; Acc@0.5 and mIoU overall and per region kind."""
    meta, emb = prep.meta, llm.get_input_embeddings()
    device = vis.device
    prefix = emb(torch.tensor(meta['prefix_ids'], device=device))
    stop = set(meta['stop_ids'])
    answers = []
    for start in range(0, len(prep.d['q_owner']), batch):
        qs = range(start, min(start + batch, len(prep.d['q_owner'])))
        rows = [torch.cat([prefix, proj(vis[int(prep.d['q_owner'][q])]),
                           emb(torch.as_tensor(prep.prompt(q), device=device))]) for q in qs]
        n = max(len(r) for r in rows)
        x = torch.stack([torch.cat([r.new_zeros(n - len(r), r.shape[1]), r]) for r in rows])
        mask = torch.stack([torch.arange(n, device=device) >= n - len(r) for r in rows]).long()
        out = [[] for _ in rows]
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        for _ in range(v['max_new_tokens']):
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = llm(inputs_embeds=x, attention_mask=mask, position_ids=pos).logits[:, -1]
            nxt = logits.argmax(-1)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    if t in stop:
                        done[i] = True
                    else:
                        out[i].append(t)
            if bool(done.all()):
                break
            x = torch.cat([x, emb(nxt)[:, None]], 1)
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], 1)
        answers += [tokenizer.decode(o, skip_special_tokens=True).strip() for o in out]
    return score(answers, prep.d['boxes'], meta['kinds'], meta['box_style']) | dict(answers=answers[:8])


def _iou(a, b) -> float:
    if a is None or a[2] <= a[0] or a[3] <= a[1]:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def score(answers, boxes, kinds, style: str) -> dict:
    parsed = [parse_box(a, style) for a in answers]
    ious = np.array([_iou(p, list(b)) for p, b in zip(parsed, boxes)])
    kinds = np.array(kinds)
    out = dict(acc=float((ious >= 0.5).mean() * 100), miou=float(ious.mean() * 100),
               unparsed=int(sum(p is None for p in parsed)), num=len(ious))
    for k in sorted(set(kinds.tolist())):
        out[f'{k}_acc'] = float((ious[kinds == k] >= 0.5).mean() * 100)
    return out


def run(args) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    variants = json.loads(open(args.variants).read() if osp.isfile(args.variants) else args.variants)
    variants = [dict(VARIANT, **v) for v in variants][args.worker::args.workers]
    towers = dict(s.split('=', 1) for s in args.encoder)
    llms = dict(s.split('=', 1) for s in args.llm)
    preps, tokens = {}, {}
    for v in variants:
        t0 = time.time()
        if v['prep'] not in preps:
            preps[v['prep']] = Prepared(osp.join(args.prep_root, v['prep']))
        prep = preps[v['prep']]
        key = (v['encoder'], v['prep'], v['feature_layer'])
        if key not in tokens:
            size = prep.meta['image_size']
            root = prep.meta['data_root']
            tokens[key] = encode(towers[v['encoder']], load_pixels(root, prep.meta['train_images'], size),
                                 args.device, layer=v['feature_layer'])
            tokens[key + ('val', )] = encode(towers[v['encoder']],
                                             load_pixels(root, prep.meta['val_images'], size),
                                             args.device, layer=v['feature_layer'])
        torch.manual_seed(v['seed'])
        llm = AutoModelForCausalLM.from_pretrained(llms[v['llm']],
                                                   attn_implementation='eager').to(args.device)
        tok = AutoTokenizer.from_pretrained(llms[v['llm']])
        vis, vis_val = tokens[key], tokens[key + ('val', )]
        if v['position_code']:
            scale = v['position_code'] * vis.pow(2).mean().sqrt()
            code = position_code(vis.shape[1], vis.shape[2]).to(vis) * scale
            vis, vis_val = vis + code, vis_val + code
        proj = build_projector(vis.shape[-1], llm.config.hidden_size, v['projector'],
                               towers[v['encoder']]).to(args.device)
        losses = train(v, prep, llm, proj, vis)
        res = evaluate(v, prep, llm, proj, vis_val, tok)
        res.update(variant={k: v[k] for k in v}, seconds=round(time.time() - t0, 1),  # iters 0: stage 1 as is
                   loss_first=float(np.mean(losses[:20])) if losses else None,
                   loss_last=float(np.mean(losses[-50:])) if losses else None)
        print(json.dumps({k: res[k] for k in res if k != 'answers'}), flush=True)
        if args.out:
            with open(args.out, 'a') as f:
                f.write(json.dumps(res) + '\n')


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    a = sub.add_parser('prep', help='tokenise (project environment)')
    a.add_argument('--data-root', default='data/gran_synth')
    a.add_argument('--train-ann', default='annotations/train*.jsonl')
    a.add_argument('--val-ann', default='annotations/val*.jsonl')
    a.add_argument('--llm', default='data/tiny_llm', help='the tokenizer')
    a.add_argument('--box-style', default='decimal3')
    a.add_argument('--image-size', type=int, default=64)
    a.add_argument('--max-length', type=int, default=256)
    a.add_argument('--tasks', default='{"global_caption": 1, "caption2bbox": 4}',
                   help="the training conversations' tasks (GranLLaVADataset's tasks), JSON")
    a.add_argument('--caption-turn', default='last', choices=('first', 'last'),
                   help='the global-caption turn after the Caption2Bbox turns (the default of '
                        "GranLLaVADataset) or before them (row 32)")
    a.add_argument('--draws', type=int, default=4, help='task draws (epochs) kept per image; cycled after')
    a.add_argument('--out', required=True)
    b = sub.add_parser('run', help='train + evaluate variants (torch + transformers)')
    b.add_argument('--prep-root', required=True, help='folder of prep outputs; a variant names one ("prep")')
    b.add_argument('--encoder', action='append', default=[],
                   help='NAME=HF tower dir (with projector/ for stage1)')
    b.add_argument('--llm', action='append', default=[], help='NAME=HF causal LM dir')
    b.add_argument('--variants', required=True, help='JSON list (or file) of VARIANT overrides')
    b.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    b.add_argument('--worker', type=int, default=0)
    b.add_argument('--workers', type=int, default=1)
    b.add_argument('--out', default=None, help='append results here (JSONL)')
    args = p.parse_args(argv)
    prep(args) if args.cmd == 'prep' else run(args)


if __name__ == '__main__':
    main()
