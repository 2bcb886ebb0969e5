"""Evaluate a stage-2 (XTuner LLaVA) model on Gran-format data: Caption2Bbox Acc@IoU0.5 / mean IoU,
Bbox2Caption ROUGE-L.

The questions are the training conversation's, drawn deterministically (every region of every image, in file
order) by ``GranLLaVADataset``; each is asked as its own single-turn chat and answered greedily
(``llava_model.greedy_answers``); the stage-1 metrics (``GroundingMetric``, ``RegionCaptionMetric``) score the
answers. RefCOCO/+/g files from ``tools/dataset_converters/coco_refcoco_to_gran.py`` are Gran files, one
region per referring expression, so they are scored the same way (Caption2Bbox = REC accuracy).

    model, tokenizer = load_stage2(config, checkpoint)                    # or build them yourself
    metrics = evaluate_stage2(model, tokenizer, dict(ann_file='annotations/val.jsonl',
                                                     data_root='data/gran_synth/',
                                                     data_prefix=dict(img_path='images/')))
"""
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
from mmengine.config import Config

from granvit_mm.core.checkpoint_reader import read_checkpoint
from granvit_mm.evaluation.metrics import GroundingMetric, RegionCaptionMetric

from .gran_llava_dataset import GranLLaVADataset

__all__ = ['EVAL_TASKS', 'build_eval_dataset', 'predict', 'score', 'evaluate_stage2', 'load_stage2',
           'load_stage2_state_dict']

EVAL_TASKS = ('caption2bbox', 'bbox2caption')
_EVERY_REGION = 1 << 30  # a task amount larger than any region count: every region, once

AnswerFn = Callable[[torch.Tensor, List[str]], List[str]]  # (pixel_values (3, S, S), questions) -> answers


def build_eval_dataset(tokenizer, ann_file: Union[str, Sequence[str]], data_root: str = '',
                       data_prefix: Optional[dict] = None, image_size: int = 512,
                       tasks: Sequence[str] = EVAL_TASKS, box_style: str = 'decimal3',
                       unique_grounding: bool = False, **kwargs) -> GranLLaVADataset:
    """The eval questions: every region of every record, once per task, in file order (``test_mode``: a bad
    record raises, naming shard and line).

    ``unique_grounding=False`` (default) asks Caption2Bbox for every region, as RefCOCO-style benchmarks do;
    True keeps only captions unique in their image, as training does.
    """
    return GranLLaVADataset(
        ann_file, tokenizer, data_root=data_root, data_prefix=dict(data_prefix or dict(img_path='')),
        image_size=image_size, tasks={t: _EVERY_REGION for t in tasks}, box_style=box_style,
        task_mode='first', unique_grounding=unique_grounding, return_meta=True, test_mode=True,
        max_length=kwargs.pop('max_length', 1 << 20), **kwargs)


def predict(dataset: GranLLaVADataset, answer_fn: AnswerFn, max_images: Optional[int] = None,
            progress: bool = False) -> List[dict]:
    """One sample per image: ``dict(img_path, shard, line, tasks, pred_texts)`` (the metrics' input)."""
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    samples = []
    bar = _progress(n) if progress else None
    for i in range(n):
        item = dataset[i]
        answers = answer_fn(item['pixel_values'], [t['question'] for t in item['tasks']])
        if len(answers) != len(item['tasks']):
            raise RuntimeError(f'answer_fn gave {len(answers)} answers for {len(item["tasks"])} questions')
        samples.append(dict(img_path=item['img_path'], shard=item['shard'], line=item['line'],
                            tasks=item['tasks'], pred_texts=list(answers)))
        if bar is not None:
            bar.update()
    return samples


def score(samples: Sequence[dict], box_style: str = 'decimal3', iou_thr: float = 0.5) -> Dict[str, float]:
    """The stage-1 metrics on predicted samples: ``caption2bbox/acc_iou0.5``, ``caption2bbox/miou``,
    ``caption2bbox/num_unparsed``, ``caption2bbox/num``, ``bbox2caption/rouge_l``, ``bbox2caption/num``
    (accuracies, IoU and ROUGE-L in percent)."""
    metrics = {}
    for metric in (GroundingMetric(box_style=box_style, iou_thr=iou_thr), RegionCaptionMetric()):
        metric.process(None, samples)
        metrics.update(metric.evaluate(len(samples)))
    return metrics


def greedy_answer_fn(model, tokenizer, template: Optional[dict] = None, max_new_tokens: int = 64) -> AnswerFn:
    """``answer_fn`` of an XTuner LLaVA model: the questions of one image in one greedy ``generate``."""
    from .llava_model import greedy_answers

    def answer(pixel_values: torch.Tensor, questions: List[str]) -> List[str]:
        return greedy_answers(model, tokenizer, pixel_values[None], [questions], template=template,
                              max_new_tokens=max_new_tokens)[0]

    return answer


def evaluate_stage2(model, tokenizer, dataset: Union[GranLLaVADataset, dict], template: Optional[dict] = None,
                    max_new_tokens: int = 64, max_images: Optional[int] = None, progress: bool = False
                    ) -> Dict[str, float]:
    """Metrics of ``model`` (a ``GranViTLLaVAModel``) on ``dataset``: a built eval dataset, or the keyword
    arguments of :func:`build_eval_dataset` (``image_size`` defaults to the vision tower's)."""
    if isinstance(dataset, dict):
        kwargs = dict(dataset)
        kwargs.setdefault('image_size', model.visual_encoder.config.image_size)
        dataset = build_eval_dataset(tokenizer, **kwargs)
    answer_fn = greedy_answer_fn(model, tokenizer, template, max_new_tokens)
    samples = predict(dataset, answer_fn, max_images, progress)
    return score(samples, dataset.to_llava.box_style)


# ---- a trained checkpoint ---------------------------------------------------------------------------------
def load_stage2_state_dict(path: str, trust: bool = False) -> Dict[str, torch.Tensor]:
    """The weights of an ``xtuner train`` checkpoint: a ``.pth`` file or a DeepSpeed checkpoint directory.

    Read by :func:`~granvit_mm.core.checkpoint_reader.read_checkpoint`: weights-only, unless ``trust``
    (MMEngine's pickled log buffers without ``WeightsOnlyCheckpointHook``, DeepSpeed directories).
    """
    ckpt = read_checkpoint(path, trusted=trust)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise TypeError(f'{path} holds a {type(state).__name__}, not a state dict')
    return state


def load_stage2(config: Union[str, Config], checkpoint: str, trust: bool = False, device: str = 'cpu'):
    """(model, tokenizer) of an XTuner config and its trained checkpoint, each weight read once.

    As ``xtuner convert pth_to_hf`` does, the model is built under ``init_empty_weights()`` without its
    start-up weights (``pretrained_pth``, the stage-1 ``projector_path``) and the checkpoint's weights (the
    trained projector, LLM or LoRA) go in; what the checkpoint does not hold (the frozen ViT, a LoRA's base
    LLM) is read from the config's pretrained directories. A QLoRA config cannot be built on the meta device
    and is built as usual.
    """
    from xtuner.registry import BUILDER
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    for key in ('pretrained_pth', 'projector_path'):
        if key in cfg.model:
            cfg.model[key] = None
    state = load_stage2_state_dict(checkpoint, trust)
    if not any(k.startswith('projector.') for k in state):
        raise KeyError(f'{checkpoint} has no projector.* weights: not a stage-2 (XTuner LLaVA) checkpoint')
    if 'quantization_config' in cfg.model.llm:
        model = BUILDER.build(cfg.model)
        _check_keys(model, state, checkpoint)
        model.load_state_dict(state, strict=False)
    else:
        from accelerate import init_empty_weights
        with init_empty_weights():
            model = BUILDER.build(cfg.model)
        _check_keys(model, state, checkpoint)
        _fill_empty(model, state, cfg.model)
    model.to(device).eval()
    return model, BUILDER.build(cfg.tokenizer)


def _check_keys(model, state: Dict[str, torch.Tensor], checkpoint: str) -> None:
    unexpected = sorted(set(state) - set(model.state_dict()))
    if unexpected:
        raise KeyError(f'{checkpoint} does not fit the model of the config: unexpected keys '
                       f'{unexpected[:5]}{" ..." if len(unexpected) > 5 else ""}')


def _pretrained_key(name: str) -> str:
    """A parameter name inside a (PEFT-wrapped) part -> its key in the part's ``save_pretrained`` files."""
    return name.replace('base_model.model.', '', 1).replace('.base_layer.', '.')


def _fill_empty(model, state: Dict[str, torch.Tensor], model_cfg) -> None:
    """Give the meta tensors of a model built under ``init_empty_weights()`` their values: the checkpoint's,
    then the pretrained directories' (``llm`` / ``visual_encoder`` ``pretrained_model_name_or_path``)."""
    from accelerate.utils import set_module_tensor_to_device

    from granvit_mm.core.checkpoint_reader import read_checkpoint
    for name, value in state.items():
        set_module_tensor_to_device(model, name, 'cpu', value)
    for part in ('visual_encoder', 'llm'):
        module = getattr(model, part)
        empty = [n for n, t in module.state_dict(keep_vars=True).items() if t.is_meta]
        if empty:
            source = model_cfg[part].get('pretrained_model_name_or_path')
            weights = read_checkpoint(source) if source else {}
            for name in empty:
                if _pretrained_key(name) in weights:
                    set_module_tensor_to_device(module, name, 'cpu', weights[_pretrained_key(name)])
        if hasattr(module, 'tie_weights'):
            module.tie_weights()  # e.g. an lm_head tied to the embeddings, not saved on its own
    left = [n for n, t in model.state_dict(keep_vars=True).items() if t.is_meta]
    if left:
        raise KeyError(f'neither the checkpoint nor the pretrained directories hold {left[:5]}'
                       f'{" ..." if len(left) > 5 else ""}')


def _progress(n: int):
    from mmengine.utils import ProgressBar
    return ProgressBar(n)


def format_metrics(metrics: Dict[str, float]) -> Iterable[str]:
    """Lines for a terminal: Caption2Bbox first, then Bbox2Caption (tasks without questions are left out)."""
    if metrics.get('caption2bbox/num'):
        acc = next(k for k in metrics if k.startswith('caption2bbox/acc_iou'))
        yield (f'Caption2Bbox  Acc@IoU{acc.split("acc_iou")[1]} {metrics[acc]:6.2f}  '
               f'mIoU {metrics["caption2bbox/miou"]:6.2f}  ({metrics["caption2bbox/num"]} questions, '
               f'{metrics["caption2bbox/num_unparsed"]} answers not a box)')
    if metrics.get('bbox2caption/num'):
        yield (f'Bbox2Caption  ROUGE-L {metrics["bbox2caption/rouge_l"]:6.2f}  '
               f'({metrics["bbox2caption/num"]} questions)')
