#!/bin/sh
# On the GPU machine, through the device tool: make test-cuda's checks (tests/cuda.sh)
# with the CUDA=1 binaries carried in .dev/cuda (the tools, build/tests/cuda_decode and
# build/tests/unit), the stage-by-stage comparison with the CPU (the unit suite
# "backend"), a compute-sanitizer memcheck of a short run, ds4-bench on the CPU and on
# CUDA on the 4-layer Flash-shaped q2 model (built in /dev/shm), the batched decode on
# CUDA (--parallel), and the full-size Flash-shaped q2 model made in device memory
# (--synthetic flash at FULL_CTX, default 2048,4096,8192, then its prefill and decode
# profile at PROFILE_CTX, default 2048). The CSVs go to $OUT; the logs and profiles into
# one $OUT/logs.tar (the device tool brings back eight files).
#   usage: OUT=DIR [FULL_CTX=2048,8192] [FULL_REPEATS=1] sh scripts/device_cuda.sh
cd "$(dirname "$0")/.." || exit 2
export LD_LIBRARY_PATH=$PWD/.dev/lib
L=$(mktemp -d)
mkdir -p bin build/tests "$OUT"
cp .dev/cuda/ds4* bin/
cp .dev/cuda/cuda_decode .dev/cuda/unit build/tests/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$L/gpu.txt" 2>&1
build/tests/unit backend >"$L/stages.txt" 2>&1
tail -n 1 "$L/stages.txt"
sh tests/cuda.sh >"$L/cuda-tests.txt" 2>&1
tail -n 1 "$L/cuda-tests.txt"
grep FAIL "$L/cuda-tests.txt"
if command -v compute-sanitizer >/dev/null 2>&1; then
    compute-sanitizer --tool memcheck --error-exitcode 9 bin/ds4 run -m build/tests/cuda/tiny-a-f32.gguf \
        --prompt-ids 1,2,3,4 -n 8 --backend cuda >"$L/memcheck.txt" 2>&1
    echo "memcheck exit $?" | tee -a "$L/memcheck.txt"
fi
M=/dev/shm/flash-q2-l4-e16.gguf
bin/ds4-quant synth --quiet --fast --out "$M" --recipe q2 --layers 4 --experts 16
for b in cpu cuda; do
    bin/ds4-bench -m "$M" --backend "$b" -p 512,2048 -n 32 -r 2 --csv "$OUT/bench-flash-l4-$b.csv" 2>&1 | tail -n 4
done
bin/ds4-bench -m "$M" --backend cuda --parallel 1,2,4,8,16 -p 128 -n 64 --csv "$OUT/batch-scaling-cuda-l4.csv" 2>&1 |
    tail -n 7
rm -f "$M"
bin/ds4-bench --synthetic flash --backend cuda -p "${FULL_CTX:-2048,4096,8192}" -n 32 -r "${FULL_REPEATS:-1}" \
    --csv "$OUT/bench-synthetic-flash-q2.csv" 2>&1 | tail -n 5
bin/ds4-bench --synthetic flash --backend cuda -p "${PROFILE_CTX:-2048}" -n 32 -r 1 --profile \
    >"$L/profile-synthetic-flash-q2.txt" 2>&1
grep -A 12 '^decode profile' "$L/profile-synthetic-flash-q2.txt"
tar -C "$L" -cf "$OUT/logs.tar" .
rm -rf "$L"
