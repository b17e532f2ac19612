#!/bin/sh
# The CUDA build as a compile check (CI has nvcc but no GPU): make CUDA=1 for one
# architecture (CUDA_ARCHS, default 90a), then what its binaries must do without a GPU:
# list the backend, run the CPU as before, and answer --backend cuda in at most three
# lines with exit 1 or 2; then the GPU checks (tests/cuda.sh), which count as skipped
# here. The CPU-only build is restored at the end. Prints "N passed, N failed, N skipped".
cd "$(dirname "$0")/.." || exit 2
T=$(mktemp -d "${TMPDIR:-/tmp}/ds4-cudabuild-XXXXXX")
trap 'rm -rf "$T"; make -s >/dev/null 2>&1' EXIT
pass=0
fail=0
skipped=0
ok() { pass=$((pass + 1)); echo "ok   cuda_build/$1"; }
bad() { fail=$((fail + 1)); echo "FAIL cuda_build/$1${2:+: $2}"; }
if ! command -v "${NVCC:-nvcc}" >/dev/null 2>&1; then
    echo "skip cuda_build/* (no nvcc on the PATH)"
    echo "cuda_build: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
if make -s CUDA=1 CUDA_ARCHS="${CUDA_ARCHS:-90a}" >"$T/log" 2>&1; then ok compiles; else bad compiles "$(tail -n 5 "$T/log")"; fi
if bin/ds4 --version | grep -q 'backends: cpu, cuda'; then ok lists_cuda; else bad lists_cuda; fi
if readelf -d bin/ds4 | grep -q 'libcuda'; then bad no_driver_link; else ok no_driver_link; fi
bin/ds4-quant convert --quiet --in vectors/models/tiny-a --out "$T/a.gguf" --type f32
bin/ds4 run -m "$T/a.gguf" --prompt-ids 1,2,3 -n 4 -t 2 >"$T/cpu.out" 2>/dev/null
if [ -s "$T/cpu.out" ]; then ok runs_the_cpu; else bad runs_the_cpu; fi
if bin/ds4 run -m "$T/a.gguf" --prompt-ids 1,2,3 -n 4 --backend cuda >/dev/null 2>"$T/err"; then
    ok gpu_present # this machine has one: tests/cuda.sh below checks it
else
    rc=$?
    if [ "$rc" -le 2 ] && [ "$(wc -l <"$T/err")" -le 3 ] && grep -q 'cuda' "$T/err"; then ok no_gpu_answer
    else bad no_gpu_answer "exit $rc: $(head -c 300 "$T/err")"; fi
fi
sh tests/cuda.sh >"$T/gpu" 2>&1
cat "$T/gpu"
line=$(tail -n 1 "$T/gpu")
p=$(echo "$line" | sed -n 's/.* \([0-9]*\) passed.*/\1/p') f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
pass=$((pass + ${p:-0})) fail=$((fail + ${f:-1})) skipped=$((skipped + ${s:-0}))
echo "cuda_build: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
