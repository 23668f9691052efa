#!/usr/bin/env bash
# Every GPU check and figure in one call, for a session lent a GPU (15 minutes in all, at most 10
# per command; the limits below add up to 9.5 minutes), most wanted first, each step's output kept
# as it ends so that a call cut short still returns what ran:
#   1. GPT-2 small's training step compiled (the forward and loss as one graph, fused AdamW,
#      bf16, flash SDPA) at batch 16, 32 and 64: tokens/s and MFU against the nominal bf16
#      peak, with issue 45's target of 50% (benchmarks/gpu_train.py);
#   2. the same step eager at the same batch sizes, the reference the compiled one is read by;
#   3. the paper-base encoder-decoder's training step compiled, target tokens/s per GPU;
#   4. decoding with each step replayed as a CUDA graph against the same decoding eager and
#      against transformers' generate, with whether the graph's tokens equal eager's: the
#      paper-base encoder-decoder, greedy and beam 5 (benchmarks/graph_decode.py), and GPT-2
#      small's shape, greedy (benchmarks/graph_generate.py); transformers only where
#      installed (its wheel may be put in .gpu/ too);
#   5. the gpu tests;
#   6. configs/wmt14_en_de_base.toml itself through `aiayn train` on the Multi30k files in data/
#      (one GPU, 25,000-token steps): steps/s per GPU with the real data path.
# With FULL=1 (over the 9.5 minutes: for a session with the time), also
#   7. configs/shakespeare_char.toml trained to its validation loss, with its time.
#
# The GPU machine has torch and most dependencies but not tomli_w nor the Shakespeare text;
# before the call, here: mkdir -p .gpu && cp ../shared/data/tinyshakespeare/input.txt .gpu/ &&
# pip download --no-deps -d .gpu tomli_w, with `/.gpu/` in .git/info/exclude; then run
# `bash scripts/gpu_checks.sh` carrying .gpu. Everything goes to $OUT (default runs/gpu);
# results/gpu.md has what it gave on an H200.
# `SMOKE=1 bash scripts/gpu_checks.sh` runs each step at toy size, to try the script on a CPU.
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
LOG="$OUT/gpu_checks.log"
if ls .gpu/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TEXT=.gpu/input.txt
[ -f "$TEXT" ] || TEXT=../shared/data/tinyshakespeare/input.txt
M30K=data/multi30k

step() {  # step SECONDS COMMAND...: run it with a time limit, its output into the log
  local limit=$1; shift
  echo "== $* (limit ${limit}s)" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$LOG"
}
keep() {  # keep the benchmarks' records so far
  grep -h '"bench": "gpu_train"' results/bench.jsonl | tail -8 > "$OUT/gpu_train.jsonl"
}

if [ -n "${SMOKE:-}" ]; then
  SIZE=tiny BATCHES=(2 4) PAPER=paper_tiny PAPER_BATCH=2 ROUNDS=2 GRAPH=(--smoke --batch 2
    --new-tokens 8 --rounds 1) LM=(--set train.max_steps=20
    --set train.eval_every=10 --set train.batch_tokens=1024 --set model.n_layers=2)
  WMT=(--set train.max_steps=4 --set train.batch_tokens=2000 --set model.n_layers=1
    --set model.n_decoder_layers=1 --set data.vocab_size=2000)
else
  SIZE=gpt2 BATCHES=(16 32 64) PAPER=paper_base PAPER_BATCH=512 ROUNDS=10 GRAPH=() LM=()
  WMT=(--set train.max_steps=60)
fi
rm -rf /tmp/shakespeare_gpu /tmp/wmt14_gpu
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$LOG"
$PY -c "import torch; print('torch', torch.__version__)" | tee -a "$LOG"

step 180 $PY -m benchmarks.gpu_train --size $SIZE --batch "${BATCHES[@]}" --modes compiled \
  --rounds $ROUNDS
keep
step 60 $PY -m benchmarks.gpu_train --size $SIZE --batch "${BATCHES[@]}" --modes eager --rounds $ROUNDS
keep
step 75 $PY -m benchmarks.gpu_train --size $PAPER --batch $PAPER_BATCH --modes compiled \
  --rounds 5
keep
step 50 $PY -m benchmarks.graph_decode "${GRAPH[@]}"
step 60 $PY -m benchmarks.graph_generate "${GRAPH[@]}"
grep -h '"bench": "graph_' results/bench.jsonl | tail -6 > "$OUT/graph_decode.jsonl"
step 110 $PY -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py
step 35 $PY -m aiayn train configs/wmt14_en_de_base.toml --out /tmp/wmt14_gpu \
  --set data.train_src=$M30K/train.en.gz --set data.train_tgt=$M30K/train.de.gz \
  --set data.valid_src=$M30K/val.en.gz --set data.valid_tgt=$M30K/val.de.gz \
  --set data.test_src=$M30K/test_2016_flickr.en.gz --set data.test_tgt=$M30K/test_2016_flickr.de.gz \
  --set train.batch_tokens=25000 --set train.accumulate=1 --set train.eval_every=100000 \
  --set train.log_every=20 --set train.average_last=1 --set train.bleu=false "${WMT[@]}"
cp /tmp/wmt14_gpu/metrics.jsonl "$OUT/wmt14_metrics.jsonl" 2>/dev/null
if [ -n "${FULL:-}" ]; then
  step 240 $PY -m aiayn train configs/shakespeare_char.toml --out /tmp/shakespeare_gpu \
    --set data.train_text="$TEXT" --set train.compile=true "${LM[@]}"
  cp /tmp/shakespeare_gpu/metrics.jsonl "$OUT/shakespeare_metrics.jsonl" 2>/dev/null
fi
exit 0
