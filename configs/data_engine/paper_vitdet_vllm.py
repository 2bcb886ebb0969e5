# The paper's engine (Gran-29M), our reading of it (docs/data_engine.md): ViTDet boxes on natural images
# (LAION, Flickr30k), given boxes kept for UMG-41M (a Gran JSONL input), Qwen2.5-VL-7B global and region
# captions from a vLLM (or SGLang/LMDeploy) OpenAI-compatible server, PP-OCR (RapidOCR ONNX) text lines on
# document sources with no global caption, and the paper's filters at its values.
#   vllm serve Qwen/Qwen2.5-VL-7B-Instruct --port 8000          # in its own environment (docs/data_engine.md)
#   python tools/data_engine.py configs/data_engine/paper_vitdet_vllm.py --input /data/laion/list.txt \
#       --work-dir /data/gran_engine/laion --launcher ray --ray-address auto
# Detector: ViTDet-style (plain ViT + SimpleFPN + Mask R-CNN); any mmdet config + checkpoint can be set here
# (mmdet's own projects/ViTDet configs too, when that project is importable). The checkpoint is yours.
detector_config = 'projects/granvit_det/configs/mask-rcnn_granvit-b16_simplefpn_lsj-100e_coco.py'
detector_checkpoint = 'checkpoints/vitdet_b_coco.pth'
server_url = 'http://127.0.0.1:8000/v1'
served_model = 'Qwen/Qwen2.5-VL-7B-Instruct'
ocr_sources = ('docvqa', 'infovqa', 'chartqa', 'textvqa', 'arxiv', 'ocr')

shard_size = 1000
batch_size = 32
source = 'laion'
stages = [
    dict(type='DecodeImages', max_pixels=40_000_000, ray=dict(concurrency=4, num_cpus=1)),
    dict(type='MMDetBoxes', config=detector_config, checkpoint=detector_checkpoint, device='cuda',
         score_thr=0.5, nms_iou=0.5, max_per_image=20, batch_size=8, skip_sources=ocr_sources,
         ray=dict(concurrency=1, num_gpus=1, batch_size=32)),
    dict(type='RapidOCRText', sources=ocr_sources, min_score=0.5, ray=dict(concurrency=4, num_cpus=1)),
    # (paper) shorter side > 448, aspect in [1/3, 3] for images and boxes, box area > 100^2, >= 1 box
    dict(type='PaperFilters', min_short_side=448, min_aspect=1 / 3, max_aspect=3.0, min_box_area=100**2,
         box_kinds=('object', 'text')),
    # (ours) prompts: the paper's are not published; region prompt = the paper's Bbox2Caption wording with
    # Qwen2-VL's 0-999 box text relative to the image
    dict(type='CaptionRegions', no_global_sources=ocr_sources, max_region_words=10, over_limit='cut',
         backend=dict(type='OpenAICaptioner', base_url=server_url, model=served_model, timeout=120,
                      max_retries=4, retry_wait=2.0, concurrency=64, max_tokens=64, box_style='int999'),
         ray=dict(concurrency=4, num_cpus=1)),
]
