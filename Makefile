# Fresh-machine entry points. Each target runs the idempotent setup first (seconds when .venv is ready).
PY := .venv/bin/python
# Tiny models on a shared 2-core machine are fastest with one intra-op thread (docs/install.md).
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
# The tiny training run uses both cores (about 0.27 s an iteration measured with 2 threads).
DEMO_THREADS ?= 2

.PHONY: setup demo test data tiny-siglip tiny-llm clean demo-deps web-demo stage2-demo stage2-grounding toy-chain lmms-eval-env tf5-env vllm-env eval-demo lint dev-deps

setup:
	bash tools/setup_env.sh

data: setup
	$(PY) tools/misc/make_gran_synth.py --out-dir data/gran_synth

# The stand-in for SigLIP2 that stage 1 starts from (SigLIP's sigmoid loss on GranSynth's global captions).
tiny-siglip: data
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) tools/misc/make_tiny_siglip.py --data-root data/gran_synth --out-dir data/tiny_siglip

# The frozen tiny LLM, warmed up to read visual tokens of the tiny SigLIP (granvit_mm/toy/llm_vision_warmup.py).
tiny-llm: tiny-siglip
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) tools/misc/make_tiny_llm.py --data-root data/gran_synth --out-dir data/tiny_llm \
		--vision-warmup-steps 300 --vision-init data/tiny_siglip/granvit_tiny_siglip.pth

# The main job on the embedded default: stage-1 GranViT pretraining of a tiny model on GranSynth.
demo: tiny-llm
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) tools/train.py configs/granvit_pretrain_tiny.py --work-dir work_dirs/granvit_pretrain_tiny

# Stage 2 (XTuner) after `make demo`: export the stage-1 ViT, train projector + LLM on Caption2Bbox, evaluate.
STAGE2_TINY := projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py
stage2-demo: setup
	$(PY) tools/model_converters/granvit_to_hf.py work_dirs/granvit_pretrain_tiny/iter_1000.pth work_dirs/granvit_pretrain_tiny/hf_encoder
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) -m xtuner.tools.train $(STAGE2_TINY)
	$(PY) tools/analysis_tools/eval_stage2.py $(STAGE2_TINY) work_dirs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2/iter_1000.pth

# Stage 2 that grounds (docs/toy_grounding.md): after `make demo`, the same step on 20,000 GranSynth images for
# 16,000 iterations with 0-999 integer boxes (about 40 minutes on 2 cores), then Caption2Bbox on GranSynth val.
STAGE2_GROUND := projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth20k_cpu_stage2.py
stage2-grounding: setup
	$(PY) tools/misc/make_gran_synth.py --out-dir data/gran_synth_20k --num-train 20000
	$(PY) tools/model_converters/granvit_to_hf.py work_dirs/granvit_pretrain_tiny/iter_1000.pth work_dirs/granvit_pretrain_tiny/hf_encoder
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) -m xtuner.tools.train $(STAGE2_GROUND)
	$(PY) tools/analysis_tools/eval_stage2.py $(STAGE2_GROUND) work_dirs/granvit_tiny_qwen2_tiny_full_gransynth20k_cpu_stage2/iter_16000.pth \
		--out work_dirs/granvit_tiny_qwen2_tiny_full_gransynth20k_cpu_stage2/eval.json

# The paper's chain at toy scale over 3 seeds (about an hour on 2 cores; docs/toy_chain.md): start encoder ->
# stage 1 with / without distillation -> region probe, detection and stage 2 from every encoder.
toy-chain: tiny-llm
	$(PY) tools/analysis_tools/toy_chain.py --work-dir work_dirs/toy_chain

# Optional: Gradio + selenium for the web demo and its browser test (requirements/demo.txt).
demo-deps: setup
	$(PY) -m pip install -q -r requirements/demo.txt -c requirements/constraints.txt

# Optional: mutmut for mutation testing by hand (requirements/dev.txt, docs/testing.md); not part of CI.
dev-deps: setup
	$(PY) -m pip install -q -r requirements/dev.txt -c requirements/constraints.txt

# Web demo on the tiny checkpoint that `make demo` trains: http://127.0.0.1:7860
web-demo: demo-deps
	$(PY) tools/web_demo.py

# The paper's evaluation protocol on the tiny model, after `make stage2-demo` (docs/evaluation.md): stage 3 for
# GranViT and for the SigLIP-like start it grew from, lmms-eval's toy tasks on both exports, the Table-1 layout
# in work_dirs/eval_demo/table.md.
eval-demo: setup lmms-eval-env
	PY=$(PY) LMMS_PY=$(LMMS_VENV)/bin/python THREADS=$(DEMO_THREADS) bash tools/misc/eval_demo.sh

# Side environments (docs/evaluation.md): lmms-eval beside transformers 4.48 (it needs filelock<4 and decord),
# and transformers 5.x (the exports load there too; `transformers serve`). Neither touches .venv.
LMMS_VENV ?= .venv-lmms
TF5_VENV ?= .venv-tf5
VLLM_VENV ?= .venv-vllm
lmms-eval-env:
	REPO_PTH=1 bash tools/setup_side_env.sh $(LMMS_VENV) requirements/envs/lmms-eval.txt
tf5-env:
	bash tools/setup_side_env.sh $(TF5_VENV) requirements/envs/tf5.txt
# vLLM (GPU machines only; several GB of CUDA wheels): `vllm serve` of an export, docs/evaluation.md
vllm-env:
	bash tools/setup_side_env.sh $(VLLM_VENV) requirements/envs/vllm.txt

test: setup
	$(PY) -m pytest tests -q

# flake8 and isort as setup.cfg configures them (requirements/lint.txt); .ci/run runs this before the tests.
LINT_PATHS := granvit_mm granvit configs projects tools tests setup.py
lint: setup
	$(PY) -m flake8 $(LINT_PATHS)
	$(PY) -m isort --check-only --diff $(LINT_PATHS)

clean:
	rm -rf work_dirs data/gran_synth data/gran_synth_20k data/tiny_siglip data/tiny_llm

# The data engine on the toy, after `make demo` (docs/data_engine.md): GranSynth val images without labels ->
# tiny detector (trained here by mmdet's train.py) + RapidOCR + the demo's stage-1 captioner -> Gran JSONL,
# scored against the truth; prints and writes work_dirs/engine_demo/scores.json.
.PHONY: engine-demo
engine-demo: setup
	$(PY) tools/analysis_tools/engine_demo.py --work-dir work_dirs/engine_demo
