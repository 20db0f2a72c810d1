#!/usr/bin/env bash
# The CUDA compiler launcher of skyreels_cuda (src/CMakeLists.txt): runs the compile it is given and keeps
# ptxas's resource report of the kernels it built (registers, stack frame, spill stores and loads, shared
# memory, per architecture; the build passes --resource-usage) in REPORT_DIR/<object>.ptxas.txt, for the
# `kernel_resources` test (cmake/check_kernel_resources.cmake). Every other line of the compiler's output
# (warnings, errors, spill warnings) passes through; the compiler's exit status is kept.
#
#   nvcc_resource_log.sh REPORT_DIR nvcc ARGS... -o obj.o ...
report_dir=$1
shift
out=
prev=
for a in "$@"; do
  [ "$prev" = -o ] && out=$a
  prev=$a
done
log=$(mktemp)
"$@" >"$log" 2>&1
rc=$?
grep -vE '^ptxas info|^ +[0-9]+ bytes stack frame' "$log" >&2
if [ -n "$out" ]; then
  mkdir -p "$report_dir"
  grep -E '^ptxas info|^ +[0-9]+ bytes stack frame' "$log" >"$report_dir/$(basename "$out").ptxas.txt"
fi
rm -f "$log"
exit $rc
