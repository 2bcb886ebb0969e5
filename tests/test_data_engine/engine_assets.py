"""Helpers of the data-engine tests: an engine config around a random-weight tiny RetinaNet (mmdet's
DetInferencer: deterministic boxes, the real code path) and a stage-1 captioner, and the written bytes."""
import os.path as osp

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
DET_CONFIG = osp.join(REPO, 'projects', 'granvit_det', 'configs',
                      'retinanet_granvit-tiny_simplefpn_gransynth-64px.py')


def engine_cfg(stage1: dict, shard_size: int = 4, min_short_side: float = 8, ray_cpus: float = 0.25) -> dict:
    """Decode -> random tiny RetinaNet (every image gets boxes) -> toy filters -> stage-1 captions."""
    ray = dict(num_cpus=ray_cpus, concurrency=1)
    return dict(shard_size=shard_size, batch_size=4, stages=[
        dict(type='DecodeImages', max_pixels=1_000_000, ray=ray),
        dict(type='MMDetBoxes', config=DET_CONFIG, checkpoint=None, score_thr=0.0, nms_iou=0.5,
             max_per_image=2,
             batch_size=1, skip_sources=['gran_synth_ocr'], ray=ray),
        dict(type='PaperFilters', min_short_side=min_short_side, min_box_area=4**2, box_kinds=['object'],
             ray=ray),
        dict(type='CaptionRegions', no_global_sources=['gran_synth_ocr'], max_region_words=4,
             over_limit='cut',
             backend=dict(type='GranViTCaptioner', config=stage1['config'], checkpoint=stage1['checkpoint'],
                          llm_path=stage1['llm_path'], batch_size=1), ray=ray),
    ])


def read_outputs(work_dir: str) -> bytes:
    import glob
    parts = sorted(glob.glob(osp.join(work_dir, 'gran', 'part-*.jsonl')))
    return b''.join(open(p, 'rb').read() for p in parts)
