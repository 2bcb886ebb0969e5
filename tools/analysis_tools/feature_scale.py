"""How large are an encoder's visual tokens, and how much of them do RoI and crop agree on?

    python tools/analysis_tools/feature_scale.py work_dirs/x/iter_500.pth work_dirs/x/iter_1000.pth

For each checkpoint (stage-1 layout: student ``backbone.*``, EMA teacher ``teacher.module.*``; or a plain
GranViT state dict, which is then its own teacher) prints the
RMS of the student's and the teacher's visual tokens on GranSynth val images, and the relative distillation
error ``|RoIAlign(student map) - pooled teacher(crop)| / |pooled teacher(crop)|``: the numbers that show
whether self-distillation drifts in scale (both grow together) or fails to agree (relative error ~1), and
the mean norm of the teacher's crop targets over the student's RoI features (above 1: MSE pulls the student's
features up, and the EMA teacher follows).
"""
import argparse
import sys

import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkpoints', nargs='+')
    p.add_argument('--config', default='configs/granvit_pretrain_tiny.py')
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--images', type=int, default=64)
    args = p.parse_args(argv)
    sys.path.insert(0, 'tools/analysis_tools')
    from mmengine.config import Config
    from region_probe import build_encoder, load_split

    from granvit_mm.core.visual_tokens import DEFAULT_VISUAL_LAYER
    from granvit_mm.models.losses import RegionDistillLoss
    cfg = Config.fromfile(args.config).model
    backbone, layer = cfg.backbone.to_dict(), cfg.get('visual_layer', DEFAULT_VISUAL_LAYER)
    size = backbone['img_size']
    images, boxes, _ = load_split(args.data_root, 'val', size, args.images)
    loss = RegionDistillLoss(**{k: v for k, v in cfg.distill_loss.items() if k != 'type'}) \
        if cfg.get('distill_loss') else RegionDistillLoss(crop_size=size // 2, roi_size=4)
    print(f'{"checkpoint":>48s}  student_rms  teacher_rms  rel_distill_err  crop/roi_norm')
    from granvit_mm.core.checkpoint_layout import STAGE1_VIT_PREFIXES
    from granvit_mm.models.backbones.pretrained_check import read_state_dict
    for path in args.checkpoints:
        keys = read_state_dict(path)
        found = {w: p for w, p in STAGE1_VIT_PREFIXES.items() if any(k.startswith(p) for k in keys)}
        student_spec = f's={path}' + (f":{found['student']}" if 'student' in found else '')
        _, student = build_encoder(backbone, student_spec, 0, layer)
        teacher = student  # no EMA teacher (no distillation, or a plain encoder): the student is its own
        if 'teacher' in found:
            _, teacher = build_encoder(backbone, f"t={path}:{found['teacher']}", 0, layer)
        with torch.no_grad():
            fs, ft = student(images)[-1], teacher(images)[-1]
            rois = loss.rois(boxes)
            target = loss.teacher_regions(teacher(loss.crops(images, rois))[-1])
            pred = loss.student_regions(fs, rois, size)
        rel = float((pred - target).norm() / target.norm())
        rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
        ratio = float(target.flatten(1).norm(dim=1).mean() / pred.flatten(1).norm(dim=1).mean())
        print(f'{path[-48:]:>48s}  {rms(fs):11.3f}  {rms(ft):11.3f}  {rel:15.3f}  {ratio:13.3f}')


if __name__ == '__main__':
    main()
