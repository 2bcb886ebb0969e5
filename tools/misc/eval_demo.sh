#!/usr/bin/env bash
# `make eval-demo` (after `make stage2-demo`): the paper's evaluation protocol on the tiny model, GranViT vs the
# SigLIP-like start it grew from, everything else equal (docs/evaluation.md):
#   1. GranSynth as LLaVA instruction data; GranSynth val as lmms-eval tasks (REC + attribute VQA);
#   2. the baseline's stage 2: the tiny stage-2 config on data/tiny_siglip (no stage-1 projector);
#   3. stage 3 (instruction tuning) for both, from their stage-2 checkpoints;
#   4. both exported to transformers, scored by lmms-eval (its own env), the Table-1 layout printed and written
#      to $OUT/table.md.
# Variables: PY (training env python), LMMS_PY (lmms-eval env python), OUT, INSTRUCT_DATA, THREADS, STAGE3_OPTS
# (extra stage-3 --cfg-options for both encoders, e.g. train_cfg.max_iters=50 for a quick look), QUESTIONS (per
# task, the first N of GranSynth val; 100 by default, empty for all: about 520 REC and 380 VQA questions).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false  # tiny models: one thread is fastest
PY=${PY:-.venv/bin/python}
LMMS_PY=${LMMS_PY:-.venv-lmms/bin/python}
OUT=${OUT:-work_dirs/eval_demo}
INSTRUCT_DATA=${INSTRUCT_DATA:-data/gran_synth_instruct}
THREADS=${THREADS:-2}
read -r -a STAGE3_EXTRA <<< "${STAGE3_OPTS:-}"
QUESTIONS=${QUESTIONS-100}
STAGE2_CFG=projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py
STAGE3_CFG=projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_instruct_cpu_stage3.py
GRANVIT_STAGE2=work_dirs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2/iter_1000.pth
SIGLIP=data/tiny_siglip
for f in "$GRANVIT_STAGE2" work_dirs/granvit_pretrain_tiny/hf_encoder/config.json "$SIGLIP/config.json"; do
  [[ -e "$f" ]] || { echo "[eval-demo] missing $f: run make demo and make stage2-demo first" >&2; exit 1; }
done
[[ -x "$LMMS_PY" ]] || { echo "[eval-demo] no lmms-eval env at $LMMS_PY: run make lmms-eval-env" >&2; exit 1; }
train() { OMP_NUM_THREADS=$THREADS "$PY" -m xtuner.tools.train "$@"; }  # exits non-zero on failure
mkdir -p "$OUT"
T0=$(date +%s)

echo "[eval-demo] 1/4 data"
"$PY" tools/misc/make_gran_synth_instruct.py --data-root data/gran_synth --out-dir "$INSTRUCT_DATA"
rm -rf "$OUT/lmms_tasks"
"$PY" tools/dataset_converters/lmms_eval_tasks.py gransynth --data-root data/gran_synth --out-dir "$OUT/lmms_tasks" \
  ${QUESTIONS:+--max-questions $QUESTIONS}

echo "[eval-demo] 2/4 baseline stage 2 (the tiny SigLIP start, everything else as GranViT's stage 2)"
SIGLIP_OPTS=(model.visual_encoder.pretrained_model_name_or_path=$SIGLIP)
[[ -f "$OUT/siglip_stage2/iter_1000.pth" ]] || \
  train "$STAGE2_CFG" --work-dir "$OUT/siglip_stage2" --cfg-options "${SIGLIP_OPTS[@]}" model.projector_path=None

echo "[eval-demo] 3/4 stage 3 (instruction tuning) from each stage-2 checkpoint"
DATA_OPTS=(train_dataloader.dataset.data_path=$INSTRUCT_DATA/train.json "${STAGE3_EXTRA[@]}")
train "$STAGE3_CFG" --work-dir "$OUT/granvit_stage3" --cfg-options "${DATA_OPTS[@]}" \
  model.pretrained_pth=$GRANVIT_STAGE2
train "$STAGE3_CFG" --work-dir "$OUT/siglip_stage3" --cfg-options "${DATA_OPTS[@]}" "${SIGLIP_OPTS[@]}" \
  model.pretrained_pth=$OUT/siglip_stage2/iter_1000.pth
T3=$(date +%s)

echo "[eval-demo] 4/4 exports, lmms-eval, table"
"$PY" tools/model_converters/xtuner_to_hf_llava.py "$STAGE3_CFG" "$(cat "$OUT/granvit_stage3/last_checkpoint")" \
  "$OUT/granvit_export"
"$PY" tools/model_converters/xtuner_to_hf_llava.py "$STAGE3_CFG" "$(cat "$OUT/siglip_stage3/last_checkpoint")" \
  "$OUT/siglip_export" \
  --cfg-options "${SIGLIP_OPTS[@]}"
rm -rf "$OUT/lmms"
"$PY" tools/analysis_tools/eval_table.py GranViT="$OUT/granvit_export" SigLIP-start="$OUT/siglip_export" \
  --tasks gransynth_rec,gransynth_rec_lmms_prompt,gransynth_attr_vqa --include-path "$OUT/lmms_tasks" \
  --work-dir "$OUT/lmms" --lmms-python "$LMMS_PY" --out "$OUT/table.md"
echo "[eval-demo] training $((T3 - T0)) s, all $(( $(date +%s) - T0 )) s; table: $OUT/table.md"
