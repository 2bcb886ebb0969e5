"""Throughput of the data engine's stages (a script that prints figures, not a timed test).

CPU (``--tiny``, what this machine can check): images/s of each stage alone on GranSynth-like images (ingest,
a tiny RetinaNet with random weights through mmdet's DetInferencer, RapidOCR on text pages, the paper filters,
a tiny Qwen2-VL captioner with random weights, and the project's stage-1 captioner when ``--stage1`` is
given), then the whole engine as a plain loop vs Ray Data with 1 and 2 actors per stage, side by side.

GPU (``--device cuda``): also the detector and the captioner at real sizes with random weights (nothing is
downloaded): a ViTDet-B-shaped detector (GranViT-B/16 + SimpleFPN + Mask R-CNN at 1024 px,
projects/granvit_det) and a Qwen2-VL-7B-shaped model in bf16 (2B-shaped if 7B does not fit), generating a
global caption (``--global-tokens``) and ``--regions`` region captions (``--region-tokens``) per image, then a
GPU-hours projection for 29.5M images. Stages whose packages are missing (mmdet/mmcv, transformers, rapidocr,
ray) are skipped and named.

    python tools/analysis_tools/benchmark_data_engine.py --tiny
    python tools/analysis_tools/benchmark_data_engine.py --device cuda --out work_dirs/engine_bench.json
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
TINY_DET = osp.join(REPO, 'projects', 'granvit_det', 'configs',
                    'retinanet_granvit-tiny_simplefpn_gransynth-64px.py')
VITDET_B = osp.join(REPO, 'projects', 'granvit_det', 'configs',
                    'mask-rcnn_granvit-b16_simplefpn_lsj-100e_coco.py')
GRAN_29M = 29_510_000
REGIONS_PER_IMAGE = 183.55 / 29.51  # Gran-29M: 183.55M regions over 29.51M images
SKIPPED = {}


def timed(fn, n_images: int, repeat: int = 1) -> float:
    """images/s of ``fn()`` (one warm-up call first)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return n_images * repeat / (time.perf_counter() - t0)


def make_images(root: str, n: int) -> list:
    from granvit_mm.toy.gran_synth import generate
    generate(root, num_train=1, num_val=n, ocr_fraction=0.25)
    with open(osp.join(root, 'annotations', 'val.jsonl')) as f:
        return [json.loads(line) for line in f]


def items_of(recs, root, with_pixels=None):
    from granvit_mm.data_engine.item import make_item
    items = [make_item(i, osp.join(root, 'images', r['image']), r['image'],
                       r['source']) for i, r in enumerate(recs)]
    if with_pixels is not None:
        with_pixels(items)
    return items


def cpu_stages(args, root, recs) -> dict:
    from granvit_mm.data_engine import DecodeImages, PaperFilters
    res = {}
    decode = DecodeImages()
    res['ingest'] = timed(lambda: decode(items_of(recs, root)), len(recs))
    decoded = items_of(recs, root, decode)
    objects = [it for it in decoded if it['source'] == 'gran_synth']
    pages = [it for it in decoded if it['source'] != 'gran_synth'][:args.ocr_pages]
    try:
        from granvit_mm.data_engine import MMDetBoxes
        det = MMDetBoxes(TINY_DET, None, device=args.device, score_thr=0.0, batch_size=8)
        res['boxes (tiny RetinaNet, random)'] = timed(lambda: det.process([dict(it) for it in objects]),
                                                      len(objects))
        det.process(objects)
    except ImportError as e:
        SKIPPED['boxes'] = f'mmdet/mmcv missing ({e})'
    try:
        from granvit_mm.data_engine import RapidOCRText
        ocr = RapidOCRText(sources=['gran_synth_ocr'])
        res['ocr (RapidOCR PP-OCRv4)'] = timed(lambda: ocr.process([dict(it) for it in pages]), len(pages))
    except ImportError as e:
        SKIPPED['ocr'] = f'rapidocr-onnxruntime missing ({e})'
    filt = PaperFilters(min_short_side=32, min_box_area=36)
    res['filters'] = timed(lambda: filt.process([dict(it, regions=list(it['regions'])) for it in objects]),
                           len(objects), repeat=20)
    if args.stage1:
        from granvit_mm.data_engine import CaptionRegions
        cap = CaptionRegions(backend=dict(type='GranViTCaptioner',
                                          config=osp.join(REPO, 'configs', 'granvit_pretrain_tiny.py'),
                                          checkpoint=args.stage1, device=args.device, batch_size=16))
        some = objects[:32]
        res['captions (stage-1 tiny GranViT)'] = timed(lambda: cap.process([dict(it) for it in some]),
                                                       len(some))
    return res


# ---- a Qwen2-VL-shaped captioner with random weights ----------------------------------------------------
QWEN2VL_SIZES = dict(
    tiny=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=1024, vision=dict(depth=2, embed_dim=32, num_heads=4),
              mrope=[2, 3, 3]),
    **{'2b': dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936,
                  vision=dict(depth=32, embed_dim=1280, num_heads=16),
                  mrope=[16, 24, 24]),
       '7b': dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152064,
                  vision=dict(depth=32, embed_dim=1280, num_heads=16),
                  mrope=[16, 24, 24])})


def qwen2vl(size: str, device: str, dtype):
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    s = QWEN2VL_SIZES[size]
    v = s['vocab_size']
    cfg = Qwen2VLConfig(
        hidden_size=s['hidden_size'], intermediate_size=s['intermediate_size'],
        num_hidden_layers=s['num_hidden_layers'], num_attention_heads=s['num_attention_heads'],
        num_key_value_heads=s['num_key_value_heads'], vocab_size=v, max_position_embeddings=4096,
        rope_scaling=dict(type='mrope', mrope_section=s['mrope']), image_token_id=v - 3,
        video_token_id=v - 4, vision_start_token_id=v - 2, vision_end_token_id=v - 1, eos_token_id=v - 5,
        pad_token_id=v - 5,
        vision_config=dict(s['vision'], hidden_size=s['hidden_size'], in_channels=3, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2,
                           mlp_ratio=4), attn_implementation='sdpa')
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(cfg, torch_dtype=dtype)
    return model.eval(), cfg


def caption_rate(size: str, device: str, dtype, batch: int, global_tokens: int, region_tokens: int,
                 image_px: int = 448, prompt_tokens: int = 32) -> dict:
    """Questions/s at ``batch`` for a global and a region caption of a ``image_px`` image, and the images/s
    that follow (one global + REGIONS_PER_IMAGE region questions per image)."""
    import numpy as np
    import torch
    from transformers import Qwen2VLImageProcessor
    model, cfg = qwen2vl(size, device, dtype)
    proc = Qwen2VLImageProcessor()
    img = np.random.default_rng(0).integers(0, 256, (image_px, image_px, 3), dtype=np.uint8)
    pix = proc(images=[img] * batch, return_tensors='pt')
    n_img_tok = int(pix['image_grid_thw'][0].prod()) // 4
    rng = torch.Generator().manual_seed(0)
    text = torch.randint(0, cfg.vocab_size - 10, (batch, prompt_tokens), generator=rng)
    ids = torch.cat([torch.full((batch, 1), cfg.vision_start_token_id), torch.full((batch, n_img_tok),
                     cfg.image_token_id), torch.full((batch, 1), cfg.vision_end_token_id), text],
                    1).to(device)
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
              pixel_values=pix['pixel_values'].to(device, dtype),
              image_grid_thw=pix['image_grid_thw'].to(device), do_sample=False)

    def rate(tokens):
        def run():
            with torch.no_grad():
                model.generate(**kw, max_new_tokens=tokens, min_new_tokens=tokens)
            if device.startswith('cuda'):
                torch.cuda.synchronize()
        return timed(run, batch)

    g, r = rate(global_tokens), rate(region_tokens)
    per_image_s = 1 / g + REGIONS_PER_IMAGE / r
    params = sum(p.numel() for p in model.parameters())
    model = None  # free it (the closure above shares this cell, so not `del`)
    if device.startswith('cuda'):
        torch.cuda.empty_cache()
    return dict(params_b=round(params / 1e9, 3), image_tokens=n_img_tok, batch=batch, global_q_per_s=g,
                region_q_per_s=r, images_per_s=1 / per_image_s)


def detector_rate(config: str, device: str, n: int, px: int, batch: int) -> float:
    import numpy as np

    from granvit_mm.data_engine import MMDetBoxes
    det = MMDetBoxes(config, None, device=device, score_thr=0.05, batch_size=batch)
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 256, (px, int(px * 1.33), 3), dtype=np.uint8) for _ in range(n)]
    return timed(lambda: det.detect(ims), n)


def engine_routes(args, root, recs) -> dict:
    """The whole engine (ingest -> tiny detector -> filters -> tiny captioner) as a loop and on Ray."""
    from granvit_mm.data_engine import run_engine
    listing = osp.join(root, 'list.txt')
    with open(listing, 'w') as f:
        f.writelines(f'{r["image"]}\t{r["source"]}\n' for r in recs)
    stages = [dict(type='DecodeImages'),
              dict(type='MMDetBoxes', config=TINY_DET, checkpoint=None, score_thr=0.0, max_per_image=4,
                   batch_size=1, skip_sources=['gran_synth_ocr']),
              dict(type='PaperFilters', min_short_side=32, min_box_area=36, box_kinds=['object'])]
    if args.stage1:
        stages.append(dict(type='CaptionRegions', no_global_sources=['gran_synth_ocr'], backend=dict(
            type='GranViTCaptioner', config=osp.join(REPO, 'configs', 'granvit_pretrain_tiny.py'),
            checkpoint=args.stage1, batch_size=8)))
    out = {}
    quiet = lambda s: None  # noqa: E731
    for name, launcher, conc in (('loop', 'local', 0), ('ray x1', 'ray', 1), ('ray x2', 'ray', 2)):
        if launcher == 'ray':
            try:
                import ray
            except ImportError:
                SKIPPED['ray'] = 'ray missing'
                continue
        st = [dict(s, ray=dict(concurrency=conc, num_cpus=0.2)) for s in stages]
        cfg = dict(shard_size=32, batch_size=8, stages=st)
        wd = tempfile.mkdtemp(prefix='engine_bench_', dir=root)
        t0 = time.perf_counter()
        run_engine(cfg, listing, wd, img_root=osp.join(root, 'images'), launcher=launcher,
                   ray_num_cpus=args.ray_cpus, log=quiet)
        out[name] = len(recs) / (time.perf_counter() - t0)
    if 'ray x1' in out:  # ray was imported in the loop
        ray.shutdown()
    return out


RSS_SNIPPET = """
import resource, sys, json
sys.path.insert(0, {repo!r})
from granvit_mm.data_engine.inputs import iter_entries
from granvit_mm.data_engine.shards import plan_shards
from granvit_mm.data_engine.pipeline import DataEngine
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mode = sys.argv[1]
if mode == 'plan':
    meta = dict(input={listing!r}, shard_size=1000)
    plan = plan_shards(iter_entries({listing!r}, '/nonexistent'), {wd!r}, 1000, meta)
else:
    eng = DataEngine(dict(stages=[dict(type='DecodeImages')], batch_size=64))
    for i in (0, 1, 2):
        eng.run_shard({wd!r}, i, i * 1000)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(base_mb=base / 1024, peak_mb=peak / 1024)))
"""


def rss_check(n: int, tmp: str) -> dict:
    """Peak RSS of planning ``n`` synthetic paths (the driver) and of a worker running 3 shards of them (every
    path is missing, so ingest rejects them: the memory of the bookkeeping, not of pixels)."""
    import subprocess
    listing, wd = osp.join(tmp, 'paths.txt'), osp.join(tmp, 'rss_run')
    with open(listing, 'w') as f:
        for i in range(n):
            f.write(f'/data/laion/part-{i // 10000:05d}/{i:012d}.jpg\n')
    code = RSS_SNIPPET.format(repo=REPO, listing=listing, wd=wd)
    out = {}
    for mode in ('plan', 'worker'):
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, '-c', code, mode], capture_output=True, text=True, check=True)
        out[mode] = dict(json.loads(res.stdout.strip().splitlines()[-1]),
                         seconds=round(time.perf_counter() - t0, 1))
    out['paths'] = n
    out['list_mb'] = os.path.getsize(listing) / 2**20
    return out


def attempt(name: str, fn):
    """Run one section; a missing package (or another version's API) skips it, named with the error in the
    report, instead of stopping the run."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- a benchmark reports what it could not run
        SKIPPED[name] = f'{type(e).__name__}: {str(e)[:300]}'
        return None


def captioner_section(args, cuda: bool) -> dict:
    import torch
    size = args.vlm_size or ('7b' if cuda else 'tiny')
    dtype = torch.bfloat16 if cuda else torch.float32
    batch = args.vlm_batch or (64 if cuda else 8)
    oom = getattr(torch, 'OutOfMemoryError', torch.cuda.OutOfMemoryError)
    try:
        return dict(size=size, **caption_rate(size, args.device, dtype, batch, args.global_tokens,
                                              args.region_tokens))
    except oom:
        if size != '7b':
            raise
        torch.cuda.empty_cache()
        return dict(size='2b', note='7b did not fit', **caption_rate('2b', args.device, dtype, batch,
                                                                     args.global_tokens, args.region_tokens))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='CPU sizes only (what a laptop can check)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--images', type=int, default=64)
    p.add_argument('--ocr-pages', type=int, default=8)
    p.add_argument('--stage1', default=None, help='a stage-1 checkpoint to time the GranViT captioner')
    p.add_argument('--ray-cpus', type=int, default=2)
    p.add_argument('--no-routes', action='store_true', help='skip the loop vs Ray comparison')
    p.add_argument('--vlm-size', default=None, choices=sorted(QWEN2VL_SIZES),
                   help='default: 7b on cuda, tiny')
    p.add_argument('--vlm-batch', type=int, default=None)
    p.add_argument('--global-tokens', type=int, default=96)
    p.add_argument('--region-tokens', type=int, default=16)
    p.add_argument('--det-batch', type=int, default=8)
    p.add_argument('--rss-paths', type=int, default=0, help='also measure the RSS of planning this many '
                   'synthetic paths and of a worker (e.g. 5000000)')
    p.add_argument('--only-rss', action='store_true')
    p.add_argument('--out', default=None)
    args = p.parse_args(argv)
    if args.rss_paths:
        with tempfile.TemporaryDirectory() as tmp:
            rss = rss_check(args.rss_paths, tmp)
        print('RSS:', json.dumps(rss))
        if args.only_rss:
            return dict(rss=rss)
    cuda = args.device.startswith('cuda') and not args.tiny
    report = dict(device=args.device, stages_images_per_s={}, skipped=SKIPPED)
    with tempfile.TemporaryDirectory() as root:
        recs = make_images(root, args.images)
        rates = attempt('cpu stages (granvit_mm.data_engine: mmengine)', lambda: cpu_stages(args, root, recs))
        report['stages_images_per_s'].update(rates or {})
        cap = attempt('captioner (torch + transformers)', lambda: captioner_section(args, cuda))
        if cap:
            report['captioner'] = cap
            name = f'captions (Qwen2-VL-{cap["size"]} shape, random)'
            report['stages_images_per_s'][name] = cap['images_per_s']
        if cuda:
            det = attempt('detector (mmdet + mmcv)', lambda: detector_rate(VITDET_B, args.device, 32, 1024,
                                                                           args.det_batch))
            if det:
                report['stages_images_per_s']['boxes (ViTDet-B shape @1024, random)'] = det
                report['detector_images_per_s'] = det
        if not args.no_routes:
            report['routes_images_per_s'] = attempt('loop vs Ray', lambda: engine_routes(args, root, recs))
    if cuda:
        det = report.get('detector_images_per_s')
        cap = report.get('captioner', {}).get('images_per_s')
        proj = {k: GRAN_29M / v / 3600 for k, v in (('detector', det), ('captioner', cap)) if v}
        report['gpu_hours_for_29.5M_images'] = dict(
            proj, total=sum(proj.values()),
            note='one GPU per stage, transformers generate (vLLM batches '
                 'better: an upper bound for the captioner)')
    print(f'{"stage":45s} images/s ({args.device})')
    for k, v in report['stages_images_per_s'].items():
        print(f'{k:45s} {v:10.2f}')
    if report.get('captioner'):
        print('captioner:', json.dumps(report['captioner']))
    if report.get('routes_images_per_s'):
        routes = report['routes_images_per_s'].items()
        print('whole engine: ' + '   '.join(f'{k} {v:.2f} img/s' for k, v in routes))
    if 'gpu_hours_for_29.5M_images' in report:
        print('GPU-hours for 29.5M images:', json.dumps(report['gpu_hours_for_29.5M_images']))
    if SKIPPED:
        print('skipped:', json.dumps(SKIPPED))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
