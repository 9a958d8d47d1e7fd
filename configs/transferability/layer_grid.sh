#!/usr/bin/env bash
# Per-layer LayerNorm grid (the transferability study's Table 3): one run per transformer layer, tuning only
# that layer's LayerNorms (+ head), on top of configs/transferability/layernorms.yaml.
#
#   bash configs/transferability/layer_grid.sh [task] [num_layers] [extra CLI args...]
#   bash configs/transferability/layer_grid.sh rte 6                       # MiniLM (6 layers), RTE
#   bash configs/transferability/layer_grid.sh mrpc 12 --model.backbone bert-base-uncased
#
# Layer indices are 0-based (layer 0 is next to the embeddings): the paper's layer k is index k-1.
# Each run prints a `SUMMARY ... strategy=layernorm trainable_pct=... best_val_...` line; the lines are
# collected in runs/transferability/layer_grid_<task>.txt.
set -euo pipefail
task="${1:-rte}"
layers="${2:-6}"
shift $(( $# > 2 ? 2 : $# ))
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/runs/transferability/layer_grid_${task}.txt"
mkdir -p "$(dirname "$out")"
: > "$out"
for (( index = 0; index < layers; index++ )); do
  echo "== layer $index (paper layer $(( index + 1 ))) =="
  python "$root/cli.py" fit --config "$here/layernorms.yaml" \
    --data.init_args.task "$task" \
    --model.strategy "{name: layernorm, layers: [$index]}" \
    --trainer.logger.init_args.name "layer_grid_${task}_layer${index}" \
    "$@" | tee /dev/stderr | grep '^SUMMARY' | sed "s/^/layer=$index /" >> "$out"
done
cat "$out"
