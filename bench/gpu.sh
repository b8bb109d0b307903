#!/bin/bash
# The GPU benchmarks in named suites, one call each, on a machine where ncd is not installed:
#
#   bash bench/gpu.sh SUITE [COMMIT]      (COMMIT: the argument, else $COMMIT, else git HEAD)
#
#   ops       softmax and linear attention against SDPA and fla at every T (bf16), then every
#             option of both ops checked in bfloat16 and float16
#   f32       every option checked in float32, then float32 speed at T = 4k (float32's
#             kernels spill and take minutes to compile on a fresh machine: a suite of its own)
#   gluon     the Gluon kernels against the Triton kernels of the same pass, then the grouped
#             Gluon dK/dV (config gluon_dkdv_grouped, not yet checked on a GPU) and the
#             library's softmax checks with it on
#   compiler  the compiled gallery blocks against hand-written PyTorch; the cost model
#             against measured memory and time
#   ops3      op library III (norms, integer ViT, WTA-CRS, L-Mul): checks and speed
#   gated     the gated linear-attention family: each kernel's share of a step at 8k, ncd's
#             rows at 2k-32k beside plain linear attention, then fla's (which autotunes for
#             minutes on a fresh machine, each op under its own limit); then the compiled GLA and
#             DeltaNet blocks' training step against the same blocks written with fla's kernels
#             (gated_blocks: its fla warm-up fills a call of its own, STEPS=gated_blocks);
#             PROFILE_OPS and GATED_OPS (comma lists) narrow the profile and the ncd rows
#   delta     the delta rule: the prepare kernel at each configuration (ops_sweep.py --what
#             prep), its gpu_check cases (bf16, fp16; the forward keeping its chunk states, the
#             scans reading prepared products, the states rescanned whole instead of from
#             checkpoints, the Gluon chunk kernels on Hopper among them), ncd at 2k-32k under
#             the switches side by side in one process (DELTA_VARIANTS, default: none,
#             delta_gluon=0, gated_delta_gluon=0, delta_checkpoint_states=0,
#             gated_delta_factored=0, delta_keep_values=0, gated_delta_keep_values,
#             delta_keep_states) beside fla, each kernel's share at 8k each way; more than
#             one call's steps: STEPS picks (DELTA_OPS narrows delta_ncd, DELTA_NCD_S its
#             limit in seconds, CHECK_MAX_T the longest T whose errors it measures;
#             DELTA_CHECK_S the checks' limit, 300 s, which their whole list outlasts on a
#             fresh machine: CHECK_MATCH narrows them)
#   conv      the short convolution (ops/short_conv): every option checked in bf16, fp16 and
#             fp32, its speed against conv1d, torch.compile and fla's causal_conv1d, then
#             deltanet_block's step with its kernels (--short-conv ncd) against the fla block
#             with fla's convolution (HAND_CONV=torch: PyTorch's, as the gated suite has it)
#   ncu       Nsight Compute's counters (stall reasons, occupancy, memory throughput) of one
#             launch of each kernel still far from its bound: the short convolution's dy kernel,
#             simple_gla's backward, the delta rule's forward scan and prepare kernel
#             (NCU_KERNELS="op:kernel ..." picks others; NCU_STALLS=1 adds a pass per kernel for
#             the stall reasons; needs a machine whose runtime lets ncu read the counters, which
#             the first step probes)
#   diagnose  host cost per step and per launch layer, the GPU timeline of a step, the
#             softmax kernels' block-size sweep at 8k, the host time to issue WTA-CRS linear
#             and norm steps against their device time
#   imports   only check that ncd imports
#   distributed  (the 2-GPU kind, nvidia-h200-x2) the compiled 12-block transformer trained on
#             one GPU, then on two under DDP and under FSDP2 (torchrun, NCCL), each checked
#             against the one-GPU losses; bench/distributed.py turns NVLink multicast off
#
# Each step runs under `timeout` so that a suite ends within the device's 10 minutes on a
# fresh machine (every kernel compiles first); its log and results go to $OUT (default
# /tmp/gpu_out). ncd is imported from this checkout: PYTHONPATH holds the repository root
# (ncd/__init__.py adds the top-level folders to the package) and /tmp/site, where the
# carried wheels are installed (.whl/: fla-core; .whl-ncd/: pydantic and graphviz, which the
# compiler suite needs). NO_WHEELS=1 skips the install. COMMIT names the measured commit in
# the results, where the copy on the GPU machine has no .git. STEPS (a comma list of step
# names) runs only those steps of the suite.
set -o pipefail
SUITE=${1:?"suite: ops, f32, gluon, ops3, gated, delta, conv, ncu, compiler, diagnose, distributed or imports"}
export COMMIT=${2:-${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}}
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_out}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
cd "$REPO" || exit 1

wheels=(.whl/*.whl .whl-ncd/*.whl)
if [ -z "${NO_WHEELS:-}" ] && [ -e "${wheels[0]}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
    "${wheels[@]}" || exit 1
fi
export PYTHONPATH=$REPO:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run under a time limit, keep the log, say how it ended
  local name=$1 secs=$2 start=$SECONDS rc
  shift 2
  if [ -n "${STEPS:-}" ] && [[ ",$STEPS," != *",$name,"* ]]; then
    echo "== $name skipped (not in STEPS=$STEPS)"
    return 0
  fi
  echo "== $name (limit ${secs} s)"
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "== $name rc=$rc ($((SECONDS - start)) s)$([ $rc = 124 ] && echo ', TIME LIMIT')"
  tail -n 15 "$OUT/$name.log"
}

$PY -c "import ncd.ops; print('ncd.ops from', ncd.ops.__file__)" || exit 1
nvidia-smi --query-gpu=name,clocks.sm,memory.used --format=csv,noheader 2>/dev/null

# Autotuning results carried between machines (bench/autotune_cache.py): loaded from
# bench/autotune/<gpu>.json before the steps, every result of the run saved to
# $OUT/autotune_<gpu>.json after them (copy it over the committed file to keep it).
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$HOME/.triton/cache}
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
GPU_SLUG=$($PY bench/autotune_cache.py slug "${GPU_NAME:-unknown}")
[ -f "bench/autotune/$GPU_SLUG.json" ] && $PY bench/autotune_cache.py load "bench/autotune/$GPU_SLUG.json"
save_autotune() {
  cp "bench/autotune/$GPU_SLUG.json" "$OUT/autotune_$GPU_SLUG.json" 2>/dev/null
  $PY bench/autotune_cache.py save "$OUT/autotune_$GPU_SLUG.json" \
    --meta "{\"device\": \"$GPU_NAME\", \"commit\": \"$COMMIT\"}"
}
trap save_autotune EXIT
case $SUITE in
  imports)
    $PY -c "import ncd.compiler, ncd.circuits; print('ncd.compiler imports')"
    ;;
  ops)
    step ops_gpu 300 $PY bench/ops_gpu.py --commit "$COMMIT" --out "$OUT/ops_gpu.json" \
      --details "$OUT/ops_gpu_details.json"
    step gpu_check 210 $PY bench/gpu_check.py --dtypes bfloat16,float16 --ops softmax,linear \
      --commit "$COMMIT" --out "$OUT/gpu_check.json"
    ;;
  f32)
    step gpu_check_f32 330 $PY bench/gpu_check.py --dtypes float32 --ops softmax,linear \
      --commit "$COMMIT" --out "$OUT/gpu_check_f32.json"
    step ops_gpu_f32 200 $PY bench/ops_gpu.py --T 4096 --dtype float32 --breakdown-T 0 \
      --commit "$COMMIT" --out "$OUT/ops_gpu_f32.json"
    ;;
  gluon)
    step gluon_check 240 $PY bench/gpu_check.py --dtypes bfloat16 --ops gluon \
      --commit "$COMMIT" --out "$OUT/gluon_check.json"
    # Unchecked on a GPU so far: a hang ends this step only.
    step gluon_grouped 150 $PY bench/gpu_check.py --dtypes bfloat16 --ops gluon_grouped \
      --commit "$COMMIT" --out "$OUT/gluon_grouped.json"
    ;;
  compiler)
    step compiler_gpu 240 $PY bench/compiler_gpu.py --out "$OUT"
    step cost_gpu 340 $PY bench/cost_gpu.py --out "$OUT"
    ;;
  ops3)  # op library III: norms, integer ViT, WTA-CRS and L-Mul, each checked then timed
    step ops_norm 180 $PY bench/ops_norm.py --out "$OUT/ops_norm.json"
    step ops_l2norm 90 $PY bench/ops_norm.py --ops l2_norm --shapes 262144x128,65536x128 \
      --out "$OUT/ops_l2norm.json"
    # deltanet_block with ncd's L2 normalisation and with F.normalize, interleaved in one
    # process beside the fla block (its short convolution fla's causal_conv1d: HAND_CONV)
    step l2_block 330 $PY bench/gated_blocks_gpu.py --blocks deltanet_block --l2-norm ncd \
      --variant l2_norm=torch --hand-conv "${HAND_CONV:-fla}" --out "$OUT" --fla-warmup-s 200
    step ops_ivit 120 $PY bench/ops_ivit.py --budget 105 --out "$OUT/ops_ivit.json"
    step ops_effops 125 $PY bench/ops_effops.py --commit "$COMMIT" --out "$OUT/ops_effops.json"
    step wtacrs_cuda 40 $PY -m pytest -q -p no:cacheprovider tests/ops/test_wtacrs.py -k cuda
    ;;
  gated)  # the gated family: correctness, per-kernel profile, ncd at every T, fla's anchors
    step gated_check 200 $PY bench/gpu_check.py --ops simple_gla --dtypes bfloat16,float16 \
      --out "$OUT/gated_check.json"
    step kernel_profile 150 $PY bench/diagnose/kernel_profile.py --T 8192 ${PROFILE_OPS:+--ops $PROFILE_OPS} --out "$OUT/kernel_profile.json"
    step ops_gated_ncd 200 $PY bench/ops_gated.py --impls ncd ${GATED_OPS:+--ops $GATED_OPS} --T ${GATED_T:-1024 2048 8192 32768} --limit 190 \
      --out "$OUT/ops_gated_ncd.json"
    step ops_gated_fla 230 $PY bench/ops_gated.py --impls fla --ops ${GATED_FLA_OPS:-linear_attention,simple_gla,delta_rule} \
      --T ${GATED_FLA_T:-2048 8192} --limit 110 --out "$OUT/ops_gated_fla.json"
    # fla's warm-up (a child under --fla-warmup-s) and then about 2 minutes of measuring
    step gated_blocks 540 $PY bench/gated_blocks_gpu.py --out "$OUT" \
      --fla-warmup-s "${GATED_BLOCKS_WARMUP_S:-380}"
    ;;
  delta)  # the delta rule: every option checked in bf16 and fp16 (the forward that keeps its
    # chunk states or V' too), ncd beside fla at 2k-32k with the states recomputed and kept
    # (NCD_DELTA_KEEP_STATES, NCD_DELTA_KEEP_VALUES), each kernel's share at 8k each way
    step delta_prep_sweep 200 $PY bench/diagnose/ops_sweep.py --T 8192 --what prep
    step delta_check ${DELTA_CHECK_S:-300} $PY bench/gpu_check.py --ops delta_rule --dtypes bfloat16,float16 \
      ${CHECK_MATCH:+--match "$CHECK_MATCH"} --commit "$COMMIT" --out "$OUT/delta_check.json"
    # each configuration alone (every kernel in entry N of its list, untuned), on the cases of
    # the switches whose lists have new entries
    for n in 0 1 2 3 4; do
      step delta_pin$n 120 $PY bench/gpu_check.py --ops delta_rule --dtypes bfloat16 --pin $n \
        --match "${PIN_MATCH:-prepared|keep_states|keep_values|keep_w|factored|decay_matrix|near=0.0 state=[a-zA-Z]* packed=False$}" \
        --commit "$COMMIT" --out "$OUT/delta_pin$n.json"
    done
    # ncd under each switch side by side in one process (rows name their variant)
    step delta_ncd ${DELTA_NCD_S:-240} $PY bench/ops_gated.py --impls ncd --ops ${DELTA_OPS:-delta_rule,gated_delta_rule} \
      --variants ${DELTA_VARIANTS:-default,delta_gluon=0,gated_delta_gluon=0,delta_checkpoint_states=0,gated_delta_factored=0,delta_keep_values=0,gated_delta_keep_values,delta_keep_states} \
      --T ${GATED_T:-2048 8192 32768} --check-max-t ${CHECK_MAX_T:-4096} \
      --limit $(( ${DELTA_NCD_S:-240} / 2 - 5 )) --out "$OUT/delta_ncd.json"
    step delta_fla 200 $PY bench/ops_gated.py --impls fla --ops delta_rule \
      --T ${GATED_FLA_T:-2048 8192 32768} --limit 190 --out "$OUT/delta_fla.json"
    # fla's gated rule refuses its backward under this Triton on Hopper: its guard lifted,
    # its gradients checked in the same rows
    step delta_fla_gated 200 $PY bench/ops_gated.py --impls fla --ops gated_delta_rule \
      --fla-lift-guard --T ${GATED_FLA_T:-2048 8192 32768} --limit 190 \
      --out "$OUT/delta_fla_gated.json"
    step delta_profile 90 $PY bench/diagnose/kernel_profile.py \
      --ops delta_rule,gated_delta_rule --T 8192 --out "$OUT/delta_profile.json"
    NCD_DELTA_KEEP_VALUES=1 NCD_GATED_DELTA_KEEP_VALUES=1 step delta_profile_values 60 $PY bench/diagnose/kernel_profile.py \
      --ops delta_rule,gated_delta_rule --T 8192 --out "$OUT/delta_profile_values.json"
    NCD_DELTA_KEEP_STATES=1 step delta_profile_keep 60 $PY bench/diagnose/kernel_profile.py \
      --ops delta_rule --T 8192 --out "$OUT/delta_profile_keep.json"
    # the scans reading Q K^T and the decayed keys prepared once per chunk
    NCD_DELTA_PREPARED_QK=1 step delta_profile_prep 60 $PY bench/diagnose/kernel_profile.py \
      --ops delta_rule,gated_delta_rule --T 8192 --out "$OUT/delta_profile_prep.json"
    # the gated scans forming the decay matrix (the factored decay off)
    NCD_GATED_DELTA_FACTORED=0 step delta_profile_matrix 60 $PY bench/diagnose/kernel_profile.py \
      --ops gated_delta_rule --T 8192 --out "$OUT/delta_profile_matrix.json"
    ;;
  conv)  # the short convolution: correctness, against conv1d, deltanet_block with its kernels
    step conv_check 150 $PY bench/gpu_check.py --ops short_conv --dtypes bfloat16,float16,float32 \
      --out "$OUT/conv_check.json"
    step ops_conv 120 $PY bench/ops_conv.py --breakdown --out "$OUT/ops_conv.json"
    step conv_block 300 $PY bench/gated_blocks_gpu.py --blocks deltanet_block --short-conv ncd \
      --hand-conv "${HAND_CONV:-fla}" --out "$OUT" --fla-warmup-s 200
    ;;
  ncu)  # Nsight Compute's counters for the kernels furthest from their bound (Firecracker
    # machines read them; on gVisor ncu cannot: the probe says so first). One launch of each,
    # from inside kernel_profile.py --bare's NVTX range, past the autotuner's trials.
    NCU=${NCU:-ncu}
    step ncu_probe 60 $NCU --version
    for spec in ${NCU_KERNELS:-short_conv:_bwd_dy_kernel simple_gla:_bwd_kernel \
                delta_rule:_scan_fwd_kernel delta_rule:_prep_kernel}; do
      op=${spec%%:*} kernel=${spec#*:}
      step "ncu_${op}_${kernel#_}" 150 $NCU --clock-control none --nvtx --nvtx-include "measure/" \
        -k "regex:^${kernel}\$" --launch-count 1 --section SpeedOfLight --section Occupancy \
        --section LaunchStats --section WarpStateStats --section SchedulerStats \
        --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
        $PY bench/diagnose/kernel_profile.py --ops "$op" --T 8192 --bare 2
      # the stall reasons per issued instruction (the sections' text gives only their sum):
      # a step of its own, so that a metric this ncu lacks fails it alone
      if [ -n "${NCU_STALLS:-}" ]; then
        step "ncu_stalls_${op}_${kernel#_}" 150 $NCU --clock-control none --nvtx \
          --nvtx-include "measure/" -k "regex:^${kernel}\$" --launch-count 1 \
          --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
          $PY bench/diagnose/kernel_profile.py --ops "$op" --T 8192 --bare 2
      fi
    done
    ;;
  diagnose)
    step host_overhead 90 $PY bench/diagnose/host_overhead.py
    step host_layers 60 $PY bench/diagnose/host_layers.py
    step step_timeline 120 $PY bench/diagnose/step_timeline.py --T 4096,8192
    step ops_sweep 240 $PY bench/diagnose/ops_sweep.py --T 8192 --what attn,gluon
    step wtacrs_host 90 $PY bench/diagnose/wtacrs_host.py
    step norm_host 120 $PY bench/diagnose/norm_host.py
    step graph_steps 90 $PY bench/diagnose/graph_steps.py
    step traced_ops 300 $PY bench/diagnose/traced_ops.py
    step compiled_blocks 300 $PY bench/diagnose/compiled_blocks.py
    ;;
  distributed)  # two GPUs (NPROC=1: the one-GPU baseline); DIST_ARGS=--dry runs it on the CPU
    step distributed_single 170 $PY bench/distributed.py --impl single ${DIST_ARGS:-} \
      --out "$OUT/distributed_single.json"
    for impl in ddp fsdp2; do
      step "distributed_$impl" 180 $PY -m torch.distributed.run --nproc_per_node "${NPROC:-2}" \
        bench/distributed.py --impl "$impl" ${DIST_ARGS:-} --reference "$OUT/distributed_single.json" \
        --out "$OUT/distributed_$impl.json"
    done
    ;;
  *)
    echo "unknown suite: $SUITE (ops, f32, gluon, ops3, gated, conv, ncu, compiler, diagnose, distributed or imports)" >&2
    exit 2
    ;;
esac
