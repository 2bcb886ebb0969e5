# A folder of your own photos on one machine: mmdet boxes + a transformers Qwen2-VL captioner (local weights;
# nothing is downloaded at run time). Set the three paths, then:
#   python tools/data_engine.py configs/data_engine/photos_qwen2vl_hf.py --input ~/Pictures \
#       --work-dir work_dirs/my_gran
# The paper's filters are kept except the shorter-side rule (phone photos pass it; screenshots may not).
detector_config = 'projects/granvit_det/configs/mask-rcnn_granvit-b16_simplefpn_lsj-100e_coco.py'
detector_checkpoint = 'checkpoints/vitdet_b_coco.pth'
vlm_path = 'checkpoints/Qwen2-VL-2B-Instruct'
device = 'cpu'

shard_size = 200
batch_size = 8
source = 'photos'
stages = [
    dict(type='DecodeImages', max_pixels=40_000_000),
    dict(type='MMDetBoxes', config=detector_config, checkpoint=detector_checkpoint, device=device,
         score_thr=0.5, nms_iou=0.5, max_per_image=10, batch_size=1),
    dict(type='PaperFilters', min_short_side=224, min_box_area=64**2, box_kinds=('object', )),
    dict(type='CaptionRegions', max_region_words=10, over_limit='cut',
         backend=dict(type='HFVLMCaptioner', model_path=vlm_path, device=device, dtype='float32',
                      batch_size=4,
                      max_new_tokens=48, box_style='int999',
                      processor_kwargs=dict(min_pixels=128 * 28 * 28, max_pixels=512 * 28 * 28))),
]
