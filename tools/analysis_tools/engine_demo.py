"""`make engine-demo`: GranSynth val images, without their labels, through the data engine, scored against
GranSynth's truth (docs/data_engine.md).

1. a tiny RetinaNet (projects/granvit_det/configs/retinanet_granvit-tiny_simplefpn_gransynth-64px.py)
   trained on GranSynth train by mmdet's packaged train.py, from the `make demo` stage-1 ViT;
2. the engine (configs/data_engine/gransynth_demo.py) on a list of the val images (path + source: object scene
   or text page, as a real run knows which collection an image comes from), boxes from that detector, text
   lines from RapidOCR on the pages, captions from the `make demo` stage-1 checkpoint;
3. the same captioner on the *true* boxes (the Gran JSONL route: boxes kept, captions redone): the captioner's
   share of the score apart from the detector's;
4. scores: box recall/precision at IoU 0.5, region-caption ROUGE-L of matched boxes, OCR character accuracy;
   printed and written to <work-dir>/scores.json.
Finished steps are reused on a rerun (the detector checkpoint, the engine's finished shards).
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
DET_CFG = osp.join(REPO, 'projects', 'granvit_det', 'configs',
                   'retinanet_granvit-tiny_simplefpn_gransynth-64px.py')
ENGINE_CFG = osp.join(REPO, 'configs', 'data_engine', 'gransynth_demo.py')


def train_detector(args) -> str:
    wd = osp.join(args.work_dir, 'detector')
    ckpt = osp.join(wd, f'iter_{args.det_iters}.pth')
    if osp.isfile(ckpt):
        return ckpt
    from granvit_mm.toy.gran_synth_coco import gran_synth_to_coco
    coco = {s: osp.join(args.work_dir, 'coco', f'{s}_coco_shape.json') for s in ('train', 'val')}
    os.makedirs(osp.join(args.work_dir, 'coco'), exist_ok=True)
    for split, path in coco.items():
        gran_synth_to_coco(args.data_root, split, path)
    root = osp.abspath(args.data_root) + '/'
    n = args.det_iters
    opts = [f'train_cfg.max_iters={n}', f'train_cfg.val_interval={n}',
            f'default_hooks.checkpoint.interval={n}',
            f'param_scheduler.1.end={n}', f'model.backbone.init_cfg.checkpoint={osp.abspath(args.stage1)}']
    for loader, split in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        opts += [f'{loader}_dataloader.dataset.data_root={root}',
                 f'{loader}_dataloader.dataset.ann_file={osp.abspath(coco[split])}']
    opts += [f'{e}_evaluator.ann_file={osp.abspath(coco["val"])}' for e in ('val', 'test')]
    tools = osp.join(osp.dirname(__import__('mmdet').__file__), '.mim', 'tools')
    cmd = [sys.executable, osp.join(tools, 'train.py'), DET_CFG, '--work-dir', wd, '--cfg-options'] + opts
    print('[engine_demo] detector:', ' '.join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    print(f'[engine_demo] detector trained in {time.time() - t0:.0f} s', flush=True)
    return ckpt


def engine_cfg(args, det_ckpt: str) -> dict:
    from mmengine.config import Config
    cfg = Config.fromfile(ENGINE_CFG).to_dict()
    for stage in cfg['stages']:
        if stage['type'] == 'MMDetBoxes':
            stage.update(config=DET_CFG, checkpoint=det_ckpt)
        if stage['type'] == 'CaptionRegions':
            stage['backend'].update(config=osp.join(REPO, 'configs', 'granvit_pretrain_tiny.py'),
                                    checkpoint=osp.abspath(args.stage1))
    return cfg


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--stage1', default='work_dirs/granvit_pretrain_tiny/iter_1000.pth')
    p.add_argument('--work-dir', default='work_dirs/engine_demo')
    p.add_argument('--det-iters', type=int, default=1000)
    p.add_argument('--workers', type=int, default=1)
    args = p.parse_args(argv)
    from granvit_mm.core.paths import check_path
    check_path(args.stage1, 'the stage-1 checkpoint', 'run `make demo` first')
    from granvit_mm.data_engine import run_engine
    from granvit_mm.data_engine.scoring import read_jsonl, score
    det_ckpt = train_detector(args)
    cfg = engine_cfg(args, det_ckpt)
    val = osp.join(args.data_root, 'annotations', 'val.jsonl')
    truth = read_jsonl([val])
    listing = osp.join(args.work_dir, 'val_images.txt')
    os.makedirs(args.work_dir, exist_ok=True)
    with open(listing, 'w', encoding='utf-8') as f:  # the path and its collection; no label of any kind
        f.writelines(f'{r["image"]}\t{r["source"]}\n' for r in truth.values())
    img_root = osp.join(args.data_root, 'images')
    t0 = time.time()
    m = run_engine(cfg, listing, osp.join(args.work_dir, 'engine_val'), img_root=img_root,
                   workers=args.workers)
    engine_s = time.time() - t0
    pred = read_jsonl(sorted(glob.glob(osp.join(args.work_dir, 'engine_val', 'gran', 'part-*.jsonl'))))
    # The captioner alone: the true boxes kept, captions redone (no detector, no OCR, no filters).
    ref_cfg = dict(cfg, stages=[s for s in cfg['stages'] if s['type'] in ('DecodeImages', 'CaptionRegions')])
    run_engine(ref_cfg, val, osp.join(args.work_dir, 'captions_on_true_boxes'), img_root=img_root,
               workers=args.workers)
    on_truth = read_jsonl(sorted(glob.glob(osp.join(args.work_dir, 'captions_on_true_boxes', 'gran',
                                                    '*.jsonl'))))
    scores = dict(engine=score(pred, truth), captioner_on_true_boxes=score(on_truth, truth),
                  manifest=dict((k, m[k]) for k in ('inputs', 'written', 'rejected', 'counts')),
                  engine_seconds=round(engine_s, 1), detector=det_ckpt, stage1=args.stage1)
    out = osp.join(args.work_dir, 'scores.json')
    with open(out, 'w') as f:
        json.dump(scores, f, indent=1)
    e, t = scores['engine'], scores['captioner_on_true_boxes']
    print(f'[engine_demo] {e["images_written"]}/{e["images"]} val images written in {engine_s:.0f} s; '
          f'boxes: recall {e["box_recall"]:.1f} precision {e["box_precision"]:.1f} (IoU 0.5); region-caption '
          f'ROUGE-L {e["region_caption_rouge_l"]:.1f} (on true boxes {t["region_caption_rouge_l"]:.1f}); '
          f'OCR character accuracy {e["ocr_char_accuracy"]:.1f} on {e["ocr_pages"]} pages')
    print(f'[engine_demo] scores: {out}')
    return scores


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
