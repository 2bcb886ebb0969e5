"""Evaluate a stage-2 (``xtuner train``) checkpoint on Gran-format val data, greedily.

Prints Caption2Bbox Acc@IoU0.5 and mean IoU, and Bbox2Caption ROUGE-L (the stage-1 metric code), on every
region of every image of ``--ann-file``. RefCOCO/+/g val/test files written
by ``tools/dataset_converters/coco_refcoco_to_gran.py`` work the same way (``--tasks caption2bbox`` for the
REC accuracy alone).

    python tools/analysis_tools/eval_stage2.py CONFIG CHECKPOINT [--data-root data/gran_synth/]
        [--ann-file annotations/val.jsonl] [--img-prefix images/] [--tasks caption2bbox bbox2caption]
        [--max-images N] [--max-new-tokens 64] [--device cuda] [--out work_dirs/eval.json]
        [--trust-checkpoint] [--cfg-options k=v ...]

CHECKPOINT is what ``xtuner train`` saved: a ``.pth`` file (or a DeepSpeed checkpoint directory, which needs
``--trust-checkpoint``). Defaults for the data (root, image prefix, image size, box style, chat template) come
from the config's ``train_dataloader.dataset`` when it is a ``GranLLaVADataset``, and ``--ann-file`` from the
config's ``val_ann_file``.
"""
import argparse
import json
import os.path as osp

import torch
from mmengine.config import Config, DictAction


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the XTuner stage-2 config the checkpoint was trained with')
    p.add_argument('checkpoint', help='.pth file (or DeepSpeed directory) saved by xtuner train')
    p.add_argument('--data-root', default=None, help="default: the training dataset's data_root")
    p.add_argument('--ann-file', default=None, help="Gran JSONL (path, glob or several); default: "
                                                    "the config's val_ann_file")
    p.add_argument('--img-prefix', default=None, help="image folder under data-root; default: the training "
                                                      "dataset's data_prefix['img_path']")
    p.add_argument('--tasks', nargs='+', default=['caption2bbox', 'bbox2caption'],
                   choices=['caption2bbox', 'bbox2caption'])
    p.add_argument('--box-style', default=None, help="default: the training dataset's box_style")
    p.add_argument('--unique-grounding', action='store_true',
                   help='ask Caption2Bbox only for captions unique in their image (as training draws)')
    p.add_argument('--max-images', type=int, default=None)
    p.add_argument('--max-new-tokens', type=int, default=64)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--out', default=None, help='write the metrics here (JSON) and the answers beside it '
                                               '(<out>.predictions.jsonl)')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='allow a checkpoint that needs full unpickling (weights_only=False): only for files '
                        'you trust')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, k=v')
    return p.parse_args(argv)


def data_settings(cfg: Config, args) -> dict:
    """The eval dataset's keyword arguments: command line first, then the training dataset of the config."""
    from granvit_mm.xtuner.gran_llava_dataset import config_box_style
    train = cfg.get('train_dataloader', {}).get('dataset', {}) or {}
    kind = train.get('type')
    train = train if getattr(kind, '__name__', str(kind)).endswith('GranLLaVADataset') else {}
    ann_file = args.ann_file or cfg.get('val_ann_file')
    if not ann_file:
        raise SystemExit('[granvit] no --ann-file given and the config has no val_ann_file')
    prefix = args.img_prefix if args.img_prefix is not None else \
        (train.get('data_prefix') or {}).get('img_path', '')
    out = dict(ann_file=ann_file, data_root=args.data_root if args.data_root is not None else
               train.get('data_root', ''), data_prefix=dict(img_path=prefix), tasks=tuple(args.tasks),
               box_style=args.box_style or config_box_style(cfg),
               unique_grounding=args.unique_grounding)
    if train.get('template_map_fn') is not None:
        out['template_map_fn'] = train['template_map_fn']
    return out


def main(argv=None) -> dict:
    from granvit_mm.xtuner.stage2_eval import (build_eval_dataset, format_metrics, greedy_answer_fn,
                                               load_stage2, predict, score)
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    settings = data_settings(cfg, args)
    model, tokenizer = load_stage2(cfg, args.checkpoint, trust=args.trust_checkpoint, device=args.device)
    dataset = build_eval_dataset(tokenizer, image_size=model.visual_encoder.config.image_size, **settings)
    template = cfg.get('prompt_template')
    answer_fn = greedy_answer_fn(model, tokenizer, dict(template) if template else None, args.max_new_tokens)
    samples = predict(dataset, answer_fn, args.max_images, progress=True)
    metrics = score(samples, settings['box_style'])
    print(f'\n{args.checkpoint} on {settings["ann_file"]} ({len(samples)} images):')
    for line in format_metrics(metrics):
        print(line)
    print(json.dumps(metrics))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint, **settings, metrics=metrics), f,
                      indent=2, default=str)
        with open(osp.splitext(args.out)[0] + '.predictions.jsonl', 'w', encoding='utf-8') as f:
            for s in samples:
                for task, pred in zip(s['tasks'], s['pred_texts']):
                    f.write(json.dumps(dict(image=s['img_path'], line=s['line'], task=task['task'],
                                            question=task['question'], answer=task['answer'],
                                            prediction=pred), ensure_ascii=False) + '\n')
    return metrics


if __name__ == '__main__':
    main()
