#!/usr/bin/env bash
# Remake docs/assets/results/gates/ (docs/results.md, notebook 08): train SE-ResNet-20 with
# r = 4 on the CIFAR-10 subset, then run `npsenet gates` on its 466 test images.
#
#     tools/gates_results.sh [DATA_DIR] [RUN_DIR]
#
# DATA_DIR holds cifar-10-batches-py/ (default ../shared/data/cifar10-subset); RUN_DIR is
# the training run's folder (default runs/se_resnet20_r4; kept out of git). About 15
# minutes of one CPU core on a quiet machine; a stopped run continues with --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-../shared/data/cifar10-subset}
RUN_DIR=${2:-runs/se_resnet20_r4}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

if [ -f "$RUN_DIR/checkpoint.npz" ]; then
    python3 -m npsenet train --resume "$RUN_DIR" --data-dir "$DATA_DIR" --no-progress
else
    python3 -m npsenet train --model se_resnet20 --reduction 4 --epochs 15 --seed 0 \
        --data-dir "$DATA_DIR" --no-download --out "$RUN_DIR" --no-progress
fi
python3 -m npsenet gates --checkpoint "$RUN_DIR/checkpoint.npz" --data-dir "$DATA_DIR" \
    --no-download --out docs/assets/results/gates
cp "$RUN_DIR/metrics.csv" docs/assets/results/gates/training_metrics.csv
