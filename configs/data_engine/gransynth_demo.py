# The data engine on the embedded default (`make engine-demo`, docs/data_engine.md): GranSynth val images
# without their labels -> boxes from a tiny RetinaNet trained on GranSynth train (mmdet's packaged train.py),
# text lines from RapidOCR on the text pages, captions from the `make demo` stage-1 checkpoint.
#   python tools/data_engine.py configs/data_engine/gransynth_demo.py \
#       --input work_dirs/engine_demo/val_images.txt --work-dir work_dirs/engine_demo/engine_val
# Thresholds are ours for the toy: its images are about 100-128 px (the paper's filters would drop them all).
detector_config = 'projects/granvit_det/configs/retinanet_granvit-tiny_simplefpn_gransynth-64px.py'
detector_checkpoint = 'work_dirs/engine_demo/detector/iter_1000.pth'
captioner_config = 'configs/granvit_pretrain_tiny.py'
captioner_checkpoint = 'work_dirs/granvit_pretrain_tiny/iter_1000.pth'
ocr_sources = ('gran_synth_ocr', )

shard_size = 64  # inputs per shard: the unit of work, of resume, and of a process-pool or Ray task
batch_size = 16  # items per pass through the stages (bounds decoded pixels in memory)
source = 'gran_synth'
stages = [
    dict(type='DecodeImages', max_pixels=40_000_000),
    dict(type='MMDetBoxes', config=detector_config, checkpoint=detector_checkpoint, score_thr=0.3,
         nms_iou=0.5,
         max_per_image=6, batch_size=1, skip_sources=ocr_sources),
    dict(type='RapidOCRText', sources=ocr_sources, min_score=0.5),
    dict(type='PaperFilters', min_short_side=32, min_aspect=1 / 3, max_aspect=3.0, min_box_area=6**2,
         box_kinds=('object', )),
    dict(type='CaptionRegions', no_global_sources=ocr_sources, max_region_words=10, over_limit='cut',
         backend=dict(type='GranViTCaptioner', config=captioner_config, checkpoint=captioner_checkpoint,
                      batch_size=16)),
]
