#!/bin/sh
# On the GPU machine, through the device tool: make test-cuda's checks (tests/cuda.sh)
# with the CUDA=1 binaries carried in .dev/cuda (the tools, build/tests/cuda_decode and
# build/tests/unit; or packed in .dev/cuda.tar.xz, which is unpacked first), the
# stage-by-stage comparison with the CPU (the unit suite "backend"), a compute-sanitizer
# memcheck of a short run, ds4-bench on the CPU and on CUDA on the 4-layer Flash-shaped q2
# model (built in /dev/shm), the batched decode on CUDA (--parallel), and the full-size
# Flash-shaped q2 model made in device memory (--synthetic flash at FULL_CTX, default
# 2048,4096,8192, its batched decode at FULL_PARALLEL, default 1,8,32,64, then its prefill
# and decode profile at PROFILE_CTX, default 2048), and compute-sanitizer racechecks of
# 64-token runs on tiny-a and tiny-b (and tiny-b's q2 file where the tests made it), and
# (part kernels, not in the default) ncu's time of every kernel of a decode step and of a
# 256-token prefill chunk of the full-size model, summed by kernel (scripts/kernel_times.py). PARTS picks
# among tests, racecheck, l4, full, batch, profile and kernels (default all but kernels). The CSVs go to $OUT; the logs and profiles into one
# $OUT/logs.tar (the device tool brings back eight files).
#   usage: OUT=DIR [PARTS="tests profile"] [FULL_CTX=2048,8192] [FULL_REPEATS=1] sh scripts/device_cuda.sh
cd "$(dirname "$0")/.." || exit 2
export LD_LIBRARY_PATH=$PWD/.dev/lib
L=$(mktemp -d)
PARTS=${PARTS:-tests racecheck l4 full batch profile}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
mkdir -p bin build/tests "$OUT"
[ -f .dev/cuda.tar.xz ] && tar -C .dev -xJf .dev/cuda.tar.xz
cp .dev/cuda/ds4* bin/
cp .dev/cuda/cuda_decode .dev/cuda/unit build/tests/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$L/gpu.txt" 2>&1
if part tests; then
    build/tests/unit backend >"$L/stages.txt" 2>&1
    tail -n 1 "$L/stages.txt"
    sh tests/cuda.sh >"$L/cuda-tests.txt" 2>&1
    tail -n 1 "$L/cuda-tests.txt"
    grep FAIL "$L/cuda-tests.txt"
fi
if part tests && command -v compute-sanitizer >/dev/null 2>&1; then
    compute-sanitizer --tool memcheck --error-exitcode 9 bin/ds4 run -m build/tests/cuda/tiny-a-f32.gguf \
        --prompt-ids 1,2,3,4 -n 8 --backend cuda >"$L/memcheck.txt" 2>&1
    echo "memcheck exit $?" | tee -a "$L/memcheck.txt"
fi
if part racecheck && command -v compute-sanitizer >/dev/null 2>&1; then
    # 64 tokens: a prefill chunk of 40 (the chunk kernels, the grouped MoE), 24 decoded
    mkdir -p build/tests/cuda
    # and tiny-b's q2 file from the tests (when they ran): the int8 kernels
    for m in tiny-a-f32 tiny-b-f32 tiny-b-q2; do
        A=build/tests/cuda/$m.gguf
        case $m in *-f32) [ -f "$A" ] || bin/ds4-quant convert --quiet --in "vectors/models/${m%-f32}" --out "$A" \
            --type f32 ;; esac
        [ -f "$A" ] || continue
        compute-sanitizer --tool racecheck --error-exitcode 9 bin/ds4 run -m "$A" --prompt-ids "$(seq -s, 2 41)" \
            -n 24 --backend cuda >"$L/racecheck-$m.txt" 2>&1
        echo "racecheck exit $?" | tee -a "$L/racecheck-$m.txt"
    done
fi
if part l4; then
    M=/dev/shm/flash-q2-l4-e16.gguf
    bin/ds4-quant synth --quiet --fast --out "$M" --recipe q2 --layers 4 --experts 16
    for b in cpu cuda; do
        bin/ds4-bench -m "$M" --backend "$b" -p 512,2048 -n 32 -r 2 --csv "$OUT/bench-flash-l4-$b.csv" 2>&1 | tail -n 4
    done
    bin/ds4-bench -m "$M" --backend cuda --parallel 1,2,4,8,16 -p 128 -n 64 --csv "$OUT/batch-scaling-cuda-l4.csv" 2>&1 |
        tail -n 7
    rm -f "$M"
fi
part full && bin/ds4-bench --synthetic flash --backend cuda -p "${FULL_CTX:-2048,4096,8192}" -n 32 \
    -r "${FULL_REPEATS:-1}" --probe --csv "$OUT/bench-synthetic-flash-q2.csv" 2>&1 | tail -n 5
part batch && bin/ds4-bench --synthetic flash --backend cuda --parallel "${FULL_PARALLEL:-1,8,32,64}" -p 128 -n 64 \
    --csv "$OUT/batch-scaling-cuda-flash.csv" 2>&1 | tail -n 7
if part profile; then
    bin/ds4-bench --synthetic flash --backend cuda -p "${PROFILE_CTX:-2048}" -n 32 -r 1 --profile \
        >"$L/profile-synthetic-flash-q2.txt" 2>&1
    grep -B 14 -A 14 '^decode profile' "$L/profile-synthetic-flash-q2.txt"
fi
NCU=${NCU:-/usr/local/cuda/bin/ncu}
if part kernels && [ -x "$NCU" ]; then
    # past the weights' fills (~470 launches) and most of the warm-up's 16-token prefill
    # (~2,200): its decode step (pass 1), then the 256-token chunk (pass 2)
    DS4_CUDA_NO_GRAPHS=1 "$NCU" --csv --metrics gpu__time_duration.sum --launch-skip 2600 --launch-count 5800 \
        bin/ds4-bench --synthetic flash --backend cuda -p 256 -n 1 -r 1 >"$L/ncu.csv" 2>"$L/ncu.err"
    python3 scripts/kernel_times.py "$L/ncu.csv" '^fill_kernel' 1 >"$OUT/kernels-decode.csv"
    python3 scripts/kernel_times.py "$L/ncu.csv" '^fill_kernel' 2 >"$OUT/kernels-prefill-256.csv"
    head -n 12 "$OUT/kernels-decode.csv"
    head -n 20 "$OUT/kernels-prefill-256.csv"
fi
tar -C "$L" -cf "$OUT/logs.tar" .
rm -rf "$L"
