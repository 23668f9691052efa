#!/usr/bin/env bash
# Every GPU check and figure in one call, for a session lent a GPU (an H200 for 15 minutes in
# all, at most 10 per command; this takes about 8 on one): the gpu tests, GPT-2 small's training
# step eager and compiled (tokens/s, MFU), the paper-base encoder-decoder's tokens/s per GPU,
# and configs/shakespeare_char.toml trained to its validation loss, with its time.
#
# The GPU machine has torch and most dependencies but not this repo's data or tomli_w; before
# the call, here: mkdir -p .gpu && cp ../shared/data/tinyshakespeare/input.txt .gpu/ and fetch
# tomli_w's wheel into .gpu (device README: pip download --no-deps ... -d .gpu tomli_w), with
# `/.gpu/` in .git/info/exclude; then run `bash scripts/gpu_checks.sh` carrying .gpu.
# Everything goes to $OUT (default results/gpu): gpu_checks.log and the benchmarks' JSON.
# `SMOKE=1 bash scripts/gpu_checks.sh` runs each step at toy size, to try the script on a CPU.
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
LOG="$OUT/gpu_checks.log"
if ls .gpu/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TEXT=.gpu/input.txt
[ -f "$TEXT" ] || TEXT=../shared/data/tinyshakespeare/input.txt

step() {  # step SECONDS COMMAND...: run it with a time limit, its output into the log
  local limit=$1; shift
  echo "== $* (limit ${limit}s)" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$LOG"
}

if [ -n "${SMOKE:-}" ]; then
  SIZE=tiny BATCH=2 PAPER_BATCH=2 LM=(--set train.max_steps=20 --set train.eval_every=10
    --set train.batch_tokens=1024 --set model.n_layers=2)
else
  SIZE=gpt2 BATCH=16 PAPER_BATCH=512 LM=()
fi
rm -rf /tmp/shakespeare_gpu
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$LOG"
step 240 $PY -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py
step 90 $PY -m benchmarks.gpu_train --size $SIZE --batch $BATCH
step 180 $PY -m benchmarks.gpu_train --size $SIZE --batch $BATCH --compile
step 60 $PY -m benchmarks.gpu_train --size paper_base --batch $PAPER_BATCH --rounds 5
step 360 $PY -m aiayn train configs/shakespeare_char.toml --out /tmp/shakespeare_gpu \
  --set data.train="$TEXT" --set train.compile=true "${LM[@]}"
grep -h '"bench": "gpu_train"' results/bench.jsonl | tail -3 > "$OUT/gpu_train.jsonl"
cp /tmp/shakespeare_gpu/metrics.jsonl "$OUT/shakespeare_metrics.jsonl" 2>/dev/null
exit 0
