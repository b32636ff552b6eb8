#!/usr/bin/env bash
# GPU smoke test: run it whenever a CUDA machine is at hand (never in CI), from the repository root with tsekit
# installed: `bash experiments/gpu_smoke.sh [OUT]`. It checks the GPU paths and prints a pass/fail table:
#   cuda       torch sees a GPU and runs a TD-SpeakerBeam forward on it
#   amp        `tsekit train` on cuda with mixed precision (train.amp=true), 20 steps, finite losses
#   ablation   a 4-cell ablation on GPU 0 with 2 cells at once (--gpus 0 --per-gpu 2), every cell done
#   ddp        a 2-process torchrun DDP run (ranks share GPU 0 through gloo when there is one GPU)
#   per-gpu N  the same 8-cell grid with --per-gpu 1, 2, 4: cells per hour (the throughput table)
set -uo pipefail
OUT=${1:-runs/gpu_smoke}
STEPS=${STEPS:-40}
mkdir -p "$OUT"
rows=()

check() {  # check NAME COMMAND...: run, log to OUT/NAME.log, record pass/FAIL and seconds
    local name=$1 start status
    shift
    start=$(date +%s.%N)
    if "$@" >"$OUT/$name.log" 2>&1; then status=pass; else status=FAIL; fi
    rows+=("$name|$status|$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")")
    echo "$name: $status (log: $OUT/$name.log)" >&2
}

check cuda python3 -c "
import torch, tsekit
assert torch.cuda.is_available(), 'no CUDA device'
model = tsekit.build('dvector', None, 'speakerbeam', preset='small').cuda().eval()
with torch.inference_mode():
    out = model(torch.randn(2, 32000, device='cuda'), torch.randn(2, 48000, device='cuda'))
assert out.shape == (2, 32000) and torch.isfinite(out).all()
print(torch.cuda.get_device_name(0), torch.__version__)"

check amp bash -c "tsekit train --preset small --max-steps 20 --device cuda --out '$OUT/amp' train.amp=true \
    train.val_every=10 train.checkpoint_every=10 && python3 -c \"
import json, math
rows = [json.loads(l) for l in open('$OUT/amp/metrics.jsonl')]
assert rows and all(math.isfinite(r.get('loss', r.get('si_sdr', 0.0))) for r in rows)\""

check ablation tsekit ablate --fusion film,add,concat,multiply --preset small --budget "${STEPS}steps" \
    --gpus 0 --per-gpu 2 --out "$OUT/ablation" --eval-size 16

check ddp torchrun --standalone --nproc_per_node 2 -m tsekit.cli train --preset small --max-steps 10 \
    --out "$OUT/ddp" train.val_every=5 train.checkpoint_every=5

for n in 1 2 4; do
    check "per-gpu-$n" tsekit ablate --fusion film,add,concat,multiply --adapt-layer first,last --preset small \
        --budget "${STEPS}steps" --gpus 0 --per-gpu "$n" --out "$OUT/per-gpu-$n" --eval-size 16
done

echo
echo "| check | result | seconds | cells/hour |"
echo "|---|---|---|---|"
for row in "${rows[@]}"; do
    IFS='|' read -r name status seconds <<<"$row"
    rate="—"
    case $name in
        per-gpu-*) rate=$(python3 -c "print(f'{8 * 3600 / $seconds:.0f}')") ;;
        ablation) rate=$(python3 -c "print(f'{4 * 3600 / $seconds:.0f}')") ;;
    esac
    echo "| $name | $status | $seconds | $rate |"
done
echo "(${STEPS} training steps per cell, small presets, 16 evaluation mixtures; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
! printf '%s\n' "${rows[@]}" | grep -q '|FAIL|'
