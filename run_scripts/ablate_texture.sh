#!/usr/bin/env bash
# The texture ablation (docs/ablation.md, "Where style is beyond what the ViT sees"): the demo's variants
# on synthetic paintings whose colours say nothing of their style (only the brushwork does), with few
# training images, and a style CNN trained beforehand on other paintings of the same styles, as the real
# one is trained on WikiArt. Writes output/ablation/texture/ablation.{json,md,png}; run it again to resume.
# Extra arguments go to lavis-gated-ablate (e.g. --seeds 3, --options run.max_epoch=10).
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

data=data/synthetic_texture
cnn=output/style_cnn_texture
lavis-gated-make-demo-data --output-dir "$data" --shared-palette --train "${TEXTURE_TRAIN_PER_STYLE:-8}" \
    --style-folders "${TEXTURE_CNN_PER_STYLE:-200}"
if [ ! -f "$cnn/style_cnn.pth" ]; then
    lavis-gated-train-style-cnn --images "$data/style_folders" --output-dir "$cnn" --arch resnet18 --image-size 64 \
        --epochs 15 --batch-size 32 --lr 1e-3 --device cpu --num-workers 0
fi
lavis-gated-ablate --cfg-path projects/gated/demo.yaml --variants projects/gated/ablation_demo.yaml --seeds 5 \
    --output-dir output/ablation/texture \
    --options "datasets.artquest.build_info.annotations.train.storage=$data/artquest_train.csv" \
    "datasets.artquest.build_info.annotations.val.storage=$data/artquest_val.csv" \
    "datasets.artquest.build_info.annotations.test.storage=$data/artquest_test.csv" \
    "datasets.artquest.build_info.images.storage=$data/images" \
    "model.style_encoder.checkpoint=$cnn/style_cnn.pth" "model.style_encoder.class_names=$cnn/class_names.json" \
    model.style_encoder.allow_random=false "$@"
