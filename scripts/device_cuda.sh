#!/bin/sh
# On the GPU machine, through the device tool: make test-cuda's checks (tests/cuda.sh)
# with the CUDA=1 binaries carried in .dev/cuda (the tools and build/tests/cuda_decode), a compute-sanitizer memcheck of a short
# run, ds4-bench on the CPU and on CUDA on the 4-layer Flash-shaped q2 model (built in
# /dev/shm) and the batched decode on CUDA (--parallel). Results to $OUT.
#   usage: OUT=DIR sh scripts/device_cuda.sh
cd "$(dirname "$0")/.." || exit 2
export LD_LIBRARY_PATH=$PWD/.dev/lib
mkdir -p bin build/tests "$OUT"
cp .dev/cuda/ds4* bin/
cp .dev/cuda/cuda_decode build/tests/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
sh tests/cuda.sh >"$OUT/cuda-tests.txt" 2>&1
tail -n 1 "$OUT/cuda-tests.txt"
grep FAIL "$OUT/cuda-tests.txt"
if command -v compute-sanitizer >/dev/null 2>&1; then
    compute-sanitizer --tool memcheck --error-exitcode 9 bin/ds4 run -m build/tests/cuda/tiny-a-f32.gguf \
        --prompt-ids 1,2,3,4 -n 8 --backend cuda >"$OUT/memcheck.txt" 2>&1
    echo "memcheck exit $?" | tee -a "$OUT/memcheck.txt"
fi
M=/dev/shm/flash-q2-l4-e16.gguf
bin/ds4-quant synth --quiet --fast --out "$M" --recipe q2 --layers 4 --experts 16
for b in cpu cuda; do
    bin/ds4-bench -m "$M" --backend "$b" -p 512,2048 -n 32 -r 2 --csv "$OUT/bench-flash-l4-$b.csv" 2>&1 | tail -n 4
done
bin/ds4-bench -m "$M" --backend cuda --parallel 1,2,4,8,16 -p 128 -n 64 --csv "$OUT/batch-scaling-cuda-l4.csv" 2>&1 |
    tail -n 7
rm -f "$M"
