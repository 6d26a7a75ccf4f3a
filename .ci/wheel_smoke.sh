#!/usr/bin/env bash
# The installed package as a user gets it: build the wheel from this checkout, install it (not
# editable) into a fresh virtual environment outside the checkout, and from a directory outside
# the checkout run the demo, load it with datasets, inspect it, dry-run publish, one SFT and
# one GRPO step (and one multi-turn mgpo step) with a tiny random Qwen2.5-VL, eval on a held-out
# split, and every export format. Usage: .ci/wheel_smoke.sh [WORKDIR] (default: a temporary folder, removed after).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -gt 0 ]]; then
  work="$1"; mkdir -p "$work"
else
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fi
step() { echo "== wheel smoke: $*"; }

step "build the wheel from a copy of the checkout (no stale build/ can leak in)"
mkdir -p "$work/src" "$work/dist" "$work/run"
tar -C "$repo" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./out \
    --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$work/src" -xf -
python3 -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" wheel -q --no-deps -w "$work/dist" "$work/src"
wheel=("$work"/dist/groundcot-*.whl)

step "install ${wheel[0]##*/} into $work/venv (constraints.txt: CPU torch)"
"$pip" install -q -c "$repo/constraints.txt" "${wheel[0]}"
"$work/venv/bin/python" -c 'import groundcot, sys; assert "site-packages" in groundcot.__file__, groundcot.__file__'

cd "$work/run"  # outside the checkout: only the installed copy is importable here
gc="$work/venv/bin/groundcot"
quick=(--set train.max_steps=1 --set train.grad_accum=1)

step "groundcot demo"
"$gc" demo
test -f out/demo/stats.json && test -f out/demo/README.md

step "every style loads with datasets.load_dataset(RUN, STYLE), images decoding"
"$work/venv/bin/python" - <<'PY'
import datasets
for style in ("sif", "mgpo", "aperture", "textual"):
    ds = datasets.load_dataset("out/demo", style, split="train")
    assert len(ds) and ds[0]["image"].size, style
PY

step "groundcot inspect"
"$gc" inspect out/demo
test -f out/demo/report/index.html

step "groundcot publish --dry-run (no network, no token)"
"$gc" publish out/demo --repo-id someone/groundcot-demo --dry-run | tee "$work/tree.txt"
grep -q "data/sif/" "$work/tree.txt"

step "groundcot tiny-model (a tiny random Qwen2.5-VL, offline)"
"$gc" tiny-model "$work/qwen"

step "groundcot train sft (bundled config, one step)"
"$gc" train sft jobs/train_sft.yaml --set model="$work/qwen" "${quick[@]}"
test -f out/train/sft/adapter_model.safetensors

step "groundcot train grpo (bundled config, one step, from the SFT adapter)"
"$gc" train grpo jobs/train_grpo.yaml -o out/train/grpo --set model="$work/qwen" "${quick[@]}" \
    --set init_adapter=out/train/sft --set train.batch_size=2 --set grpo.num_generations=2 \
    --set grpo.max_completion_length=16
test -f out/train/grpo/summary.json

step "groundcot train grpo, multi-turn mgpo (README: Multi-turn training)"
"$gc" train grpo jobs/train_grpo_mgpo.yaml --set model="$work/qwen" --set train.max_steps=1 --set train.batch_size=2 \
    --set grpo.num_generations=2 --set grpo.max_completion_length=64
test -f out/train/grpo_mgpo/summary.json

step "groundcot eval on a held-out split (README: Evaluate), then compared"
"$gc" generate jobs/demo.yaml -o out/demo-split --set split.test_fraction=0.3 --set depth.enabled=false \
    --set masks.enabled=false --overwrite
"$gc" eval "$work/qwen" --run out/demo-split --style sif --style textual --max-new-tokens 16 -o out/eval/base
"$gc" eval out/train/sft --run out/demo-split --style sif --style textual --max-new-tokens 16 -o out/eval/sft \
    --compare out/eval/base
test -f out/eval/sft/eval.json

for format in trl llamafactory verl; do
  step "groundcot export --format $format"
  "$gc" export out/demo --format "$format" -o "out/exports/$format"
done
"$gc" export out/demo --format verl --style sif --style textual -o out/exports/verl-sif-textual
test -f out/exports/trl/data/train-00000-of-00001.parquet && test -f out/exports/trl/grpo/train-00000-of-00001.parquet
test -f out/exports/llamafactory/dataset_info.json
test -f out/exports/verl/train.parquet
step "passed"
