#!/usr/bin/env bash
# GPU smoke check: on a machine with CUDA, one short bf16 run of each recipe on the packaged model
# (SFT, reward model, DPO full and with LoRA, RLOO against that reward model), sampling through vLLM
# when it is installed (Hugging Face generate otherwise), then the DPO throughput bench.
# On a machine without CUDA it says so and exits 0.
#
#   bash bench/gpu_smoke.sh              # outputs under runs/gpu_smoke (GPU_SMOKE_OUT to change)
#   bash bench/gpu_smoke.sh --print      # print the commands it would run, run nothing
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=${GPU_SMOKE_OUT:-runs/gpu_smoke}
SA="$PY -c 'from shiftalign.cli import main; raise SystemExit(main())'"
BACKEND=hf
if "$PY" -c "import vllm" >/dev/null 2>&1; then BACKEND=vllm; fi
BF16="model.dtype=bf16"

COMMANDS=(
  "$SA train configs/sft.yaml output_dir=$OUT/sft $BF16 train.max_steps=4"
  "$SA train configs/reward.yaml output_dir=$OUT/reward $BF16 train.max_steps=4"
  "$SA train configs/dpo.yaml output_dir=$OUT/dpo $BF16 train.max_steps=4"
  "$SA train configs/dpo.yaml output_dir=$OUT/dpo_lora $BF16 train.max_steps=4 'model.lora={r: 16, alpha: 32}'"
  "$SA train configs/rl.yaml output_dir=$OUT/rloo $BF16 iterations=2 scorer.path=$OUT/reward/model"
  "$SA sample configs/sample.yaml output=$OUT/samples.jsonl policy.path=$OUT/dpo/model backend=$BACKEND"
  "$PY bench/dpo_throughput.py --steps 6 --default-steps 4 --out $OUT/dpo_throughput.json"
)

if [ "${1:-}" = "--print" ]; then
  printf '%s\n' "${COMMANDS[@]}"
  exit 0
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_smoke: no CUDA device on this machine; nothing to check (exit 0)"
  exit 0
fi
"$PY" -c "import torch; print('gpu_smoke:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
echo "gpu_smoke: sampling backend $BACKEND"
for c in "${COMMANDS[@]}"; do
  echo "gpu_smoke: $c"
  start=$(date +%s)
  eval "$c"
  echo "gpu_smoke: ok in $(( $(date +%s) - start )) s"
done
echo "gpu_smoke: all recipes ran in bf16 on $($PY -c 'import torch; print(torch.cuda.get_device_name(0))')"
