#!/bin/bash
# Every GPU figure of bench/RESULTS.md in two calls on the lent GPU machine, each step
# time-limited so that a call ends inside the device tool's 10 minutes:
#   bash bench/gpu_all.sh ops COMMIT       # ops_gpu.py (all T) and ops_gpu_check.py (all dtypes)
#   bash bench/gpu_all.sh compiler COMMIT  # compiler_gpu.py, cost_gpu.py, host_overhead.py
#   bash bench/gpu_all.sh diag COMMIT      # ops_gpu_check.py, host_overhead.py, ops_sweep.py 8k
#   bash bench/gpu_all.sh kernels COMMIT   # softmax check, ops_sweep.py 8k, ops_gpu.py 4k and 8k
#   bash bench/gpu_all.sh timeline COMMIT  # step_timeline.py 4k and 8k, ops_gpu.py (no naive)
#   bash bench/gpu_all.sh atomic COMMIT    # ops_sweep.py --what atomic at 8k
#   bash bench/gpu_all.sh checks COMMIT    # checks by dtype, linear at every T, float32 at 4k
#   bash bench/gpu_all.sh dkdv COMMIT      # one-loop dK/dV sweep at 8k, 16-bit and linear checks
#   bash bench/gpu_all.sh final COMMIT     # ops_gpu.py (no naive), 16-bit checks, Gluon dK/dV
#   bash bench/gpu_all.sh gluonfwd COMMIT  # the experimental Gluon forward: checks and timing
#   bash bench/gpu_all.sh gluonfwd_bench COMMIT  # softmax benchmark and check with it switched on
#   bash bench/gpu_all.sh fwd_then COMMIT  # Gluon forward checks; linear bench; softmax bench
#                                           with the Gluon forward if its checks passed
#   bash bench/gpu_all.sh final2 COMMIT    # ops_gpu.py (no naive), Gluon forward (grouped
#                                           heads) and dK/dV (independent reference) checks
#   bash bench/gpu_all.sh checks2 COMMIT   # 16-bit checks, host cost, 1k-4k with the naive
#                                           forms, float32 checks
#   bash bench/gpu_all.sh checks3 COMMIT   # float16 then float32 checks (direct launches)
#   bash bench/gpu_all.sh f32 COMMIT       # every float32 check, then float32 speed at 4k (one
#                                           call: float32's kernels compile slowest)
#   bash bench/gpu_all.sh gqa COMMIT       # the Gluon dK/dV for grouped heads: its checks and
#                                           timing, then the library's checks with it on
#   bash bench/gpu_all.sh layers COMMIT    # host_layers.py
#   bash bench/gpu_all.sh imports          # only check that ncd imports through the shim
# Carry .whl (fla-core) and .whl-ncd (pydantic and its needs): ncd is not installed there, it
# is imported through a shim package made of this checkout. Logs and results go to $OUT.
# A fresh machine compiles every kernel first: the checks of all dtypes (float32's kernels
# spill and compile slowly) did not fit their step limits on 2026-11-28; `checks` splits them.
set -o pipefail
PART=${1:?fwd_then, ops, diag, kernels, timeline, atomic, checks, dkdv, final, gluonfwd, gluonfwd_bench, layers, compiler or imports}
COMMIT=${2:-unknown}
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_all}
REPO=$PWD
mkdir -p "$OUT"
wheels=(.whl/*.whl .whl-ncd/*.whl)
if [ -z "${NO_WHEELS:-}" ] && [ -e "${wheels[0]}" ]; then  # NO_WHEELS=1: use what PY has
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
    "${wheels[@]}" || exit 1
fi
rm -rf /tmp/shim && mkdir -p /tmp/shim/ncd
for e in "$REPO"/ncd/*; do ln -s "$e" /tmp/shim/ncd/; done
for d in circuits compiler ops widgets gallery; do ln -s "$REPO/$d" "/tmp/shim/ncd/$d"; done
export PYTHONPATH=/tmp/shim:/tmp/site PYTHONUNBUFFERED=1
cd /tmp || exit 1  # the checkout's own ncd/ folder would shadow the shim

step() {  # step NAME SECONDS COMMAND...: run, keep its log, say how it ended
  local name=$1 secs=$2
  shift 2
  echo "== $name (limit ${secs}s)"
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name rc=$?"
  tail -n 12 "$OUT/$name.log"
}

passed() {  # passed LOG: a check script's run ended with its SUMMARY and no failing case
  grep -q "^SUMMARY" "$1" && ! grep -q "^  .*\(FAIL\|HUNG\|not run\)" "$1"
}

$PY -c "import ncd, ncd.compiler, ncd.ops; print('ncd from', ncd.__file__)" || exit 1
case $PART in
  imports) ;;
  ops)
    nvidia-smi --query-gpu=name,clocks.sm,memory.used --format=csv,noheader
    [ -n "${HOST:-}" ] && step host 90 $PY "$REPO/bench/host_overhead.py"  # HOST=1: first
    step ops_gpu 330 $PY "$REPO/bench/ops_gpu.py" --out "$OUT/ops_gpu.json" \
      --details "$OUT/ops_details.json" --commit "$COMMIT"
    step ops_check 200 $PY "$REPO/bench/ops_gpu_check.py" ${CHECK_ARGS:-}
    ;;
  diag)  # correctness of every dtype, host cost, kernel sweep at 8k
    step ops_check 200 $PY "$REPO/bench/ops_gpu_check.py"
    step host 100 $PY "$REPO/bench/host_overhead.py"
    step sweep 240 $PY "$REPO/bench/ops_sweep.py" --T 8192 --what attn
    ;;
  kernels)  # after a kernel change: softmax correctness, the 8k sweep, both ops at 4k and 8k
    step ops_check 150 $PY "$REPO/bench/ops_gpu_check.py" --dtypes bfloat16,float32 --ops softmax
    step sweep 300 $PY "$REPO/bench/ops_sweep.py" --T 8192 --what attn
    step ops_gpu 120 $PY "$REPO/bench/ops_gpu.py" --T 4096,8192 --out "$OUT/ops_gpu.json" \
      --details "$OUT/ops_details.json" --commit "$COMMIT" --breakdown-T 0 \
      --skip softmax_attention:naive,linear_attention:naive
    ;;
  timeline)  # where a step's GPU time goes, then ops_gpu.py at every T (no naive forms)
    step timeline 120 $PY "$REPO/bench/step_timeline.py" --T 4096,8192
    step ops_gpu 380 $PY "$REPO/bench/ops_gpu.py" --out "$OUT/ops_gpu.json" \
      --details "$OUT/ops_details.json" --commit "$COMMIT" \
      --skip softmax_attention:naive,linear_attention:naive
    ;;
  atomic)  # the atomic-dQ backward's kernels and the look-ahead forward's at 8k
    step sweep 400 $PY "$REPO/bench/ops_sweep.py" --T 8192 --what atomic
    ;;
  checks)  # the GPU checks split by dtype (each fits its limit on a fresh machine), then the
    # linear op (bf16) at every T and float32 speed at 4k
    step ops_check 100 $PY "$REPO/bench/ops_gpu_check.py" --dtypes bfloat16,float16
    step ops_check_f32 170 $PY "$REPO/bench/ops_gpu_check.py" --dtypes float32
    step ops_linear 90 $PY "$REPO/bench/ops_gpu.py" --ops linear_attention --breakdown-T 0 \
      --skip linear_attention:naive --out "$OUT/ops_gpu_linear.json" --commit "$COMMIT"
    step ops_f32 140 $PY "$REPO/bench/ops_gpu.py" --T 4096 --dtype float32 --atomic-dq 0 \
      --breakdown-T 0 --skip softmax_attention:naive,linear_attention:naive \
      --out "$OUT/ops_gpu_f32.json" --commit "$COMMIT"
    ;;
  dkdv)  # every no-spill one-loop dK/dV configuration at 8k, then the checks not yet re-run
    step sweep_dkdv 300 $PY "$REPO/bench/ops_sweep.py" --T 8192 --what dkdv
    step ops_check 100 $PY "$REPO/bench/ops_gpu_check.py" --dtypes bfloat16,float16
    step ops_linear 150 $PY "$REPO/bench/ops_gpu.py" --ops linear_attention --breakdown-T 0 \
      --skip linear_attention:naive --out "$OUT/ops_gpu_linear.json" --commit "$COMMIT"
    ;;
  final)  # the whole benchmark (naive forms left out for time), 16-bit checks, Gluon dK/dV alone
    nvidia-smi --query-gpu=name,clocks.sm,power.draw,utilization.gpu --format=csv,noheader
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
    step ops_gpu 330 $PY "$REPO/bench/ops_gpu.py" --out "$OUT/ops_gpu.json" \
      --details "$OUT/ops_details.json" --commit "$COMMIT" \
      --skip softmax_attention:naive,linear_attention:naive
    step ops_check 150 $PY "$REPO/bench/ops_gpu_check.py" --dtypes bfloat16,float16
    step gluon 90 $PY "$REPO/bench/gluon_check.py" --only big_causal
    ;;
  gluonfwd)  # ops/attention/hopper_fwd.py against fused._forward, then timed at 8k
    step gluon_fwd 400 $PY "$REPO/bench/gluon_fwd_check.py"
    ;;
  gluonfwd_bench)  # the library with the Gluon forward on (NCD_GLUON_FORWARD=1)
    export NCD_GLUON_FORWARD=1
    step ops_check 150 $PY "$REPO/bench/ops_gpu_check.py" --dtypes bfloat16 --ops softmax
    step ops_gpu 300 $PY "$REPO/bench/ops_gpu.py" --T 4096,8192,16384,32768 \
      --ops softmax_attention --out "$OUT/ops_gpu.json" --details "$OUT/ops_details.json" \
      --commit "$COMMIT" --skip softmax_attention:naive
    ;;
  fwd_then)  # one call: the Gluon forward's checks (stopping at a hang), the linear benchmark,
    # then the softmax benchmark with the Gluon forward on if every check passed (else off)
    step gluon_fwd 260 $PY "$REPO/bench/gluon_fwd_check.py" --stop-on-hang \
      --only small_causal,small,small_causal_d64,mid_causal,mid_d64,S_gt_T,mid_fp16_causal,big_causal
    passed "$OUT/gluon_fwd.log" && export NCD_GLUON_FORWARD=1
    echo "== NCD_GLUON_FORWARD=${NCD_GLUON_FORWARD:-0}"
    step ops_linear 90 $PY "$REPO/bench/ops_gpu.py" --ops linear_attention --breakdown-T 0 \
      --skip linear_attention:naive --out "$OUT/ops_gpu_linear.json" --commit "$COMMIT"
    step ops_softmax 200 $PY "$REPO/bench/ops_gpu.py" --T 4096,8192,16384,32768 \
      --ops softmax_attention --out "$OUT/ops_gpu_softmax.json" \
      --details "$OUT/ops_details.json" --commit "$COMMIT" --skip softmax_attention:naive
    ;;
  final2)  # the benchmark with both Gluon kernels on by default, then their checks
    nvidia-smi --query-gpu=name,clocks.sm,power.draw,utilization.gpu --format=csv,noheader
    step ops_gpu 330 $PY "$REPO/bench/ops_gpu.py" --out "$OUT/ops_gpu.json" \
      --details "$OUT/ops_details.json" --commit "$COMMIT" \
      --skip softmax_attention:naive,linear_attention:naive
    step gluon_fwd 100 $PY "$REPO/bench/gluon_fwd_check.py" --stop-on-hang \
      --only gqa_causal,gqa_d64,small_causal,big_full
    step gluon_dkdv 130 $PY "$REPO/bench/gluon_check.py" --only d64_causal,big_causal
    ;;
  checks2)
    step ops_check 190 $PY "$REPO/bench/ops_gpu_check.py" --dtypes bfloat16,float16
    step host 80 $PY "$REPO/bench/host_overhead.py"
    step ops_short 120 $PY "$REPO/bench/ops_gpu.py" --T 1024,2048,4096 --breakdown-T 0 \
      --out "$OUT/ops_gpu_short.json" --commit "$COMMIT"
    step ops_check_f32 150 $PY "$REPO/bench/ops_gpu_check.py" --dtypes float32
    ;;
  checks3)  # each checked step follows two steps of the same shape (the direct launches)
    step ops_check_f16 180 $PY "$REPO/bench/ops_gpu_check.py" --dtypes float16
    step ops_check_f32 190 $PY "$REPO/bench/ops_gpu_check.py" --dtypes float32
    ;;
  f32)  # float32 alone: on a fresh machine its checks outran 150-190 s steps twice (2026-11-29)
    step ops_check_f32 330 $PY "$REPO/bench/ops_gpu_check.py" --dtypes float32
    step ops_f32 200 $PY "$REPO/bench/ops_gpu.py" --T 4096 --dtype float32 --breakdown-T 0 \
      --skip softmax_attention:naive,linear_attention:naive \
      --out "$OUT/ops_gpu_f32.json" --commit "$COMMIT"
    ;;
  gqa)  # hopper.py's GROUP kernel (off by default until this passes: NCD_GLUON_DKDV_GROUPED)
    step gluon_gqa 300 $PY "$REPO/bench/gluon_check.py" --stop-on-hang \
      --only gqa_causal,gqa4_d64,gqa_big_causal
    if passed "$OUT/gluon_gqa.log"; then
      export NCD_GLUON_DKDV_GROUPED=1
      step ops_check 200 $PY "$REPO/bench/ops_gpu_check.py" --dtypes bfloat16 --ops softmax
    fi
    ;;
  layers)  # host time of each layer of a linear-attention launch
    step layers 120 $PY "$REPO/bench/host_layers.py"
    ;;
  compiler)
    step compiler_gpu 200 $PY "$REPO/bench/compiler_gpu.py" --out "$OUT"
    step cost_gpu 250 $PY "$REPO/bench/cost_gpu.py" --out "$OUT"
    step host 60 $PY "$REPO/bench/host_overhead.py"
    ;;
  *) echo "unknown part: $PART" >&2; exit 2 ;;
esac
