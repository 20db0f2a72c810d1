#!/usr/bin/env bash
# Installs the Debian packages skyreels.cpp builds with, when any is missing. Idempotent and
# non-interactive: a machine that has them all is left untouched (no apt-get update).
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libdnnl-dev            # oneDNN: CPU GEMM (and 3-D convolution for the VAE)
  nlohmann-json3-dev     # JSON (config.json, safetensors headers)
  libcli11-dev           # command line
  libfmt-dev             # formatting
  libpcre2-dev           # tokenizer pre-split regex (Unicode classes)
  libicu-dev             # CLIP tokenizer's Unicode cleanup (categories, NFC, lower-casing)
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev  # H.264/MP4 video output
  ffmpeg                 # ffprobe, which the media tests check the videos with
  libjpeg62-turbo-dev libpng-dev  # the I2V image (JPEG, PNG) as Pillow reads it; PNG frames
  zlib1g-dev             # CRC-32 of the animated preview's chunks
  libgtest-dev googletest libbenchmark-dev  # tests and benchmarks
  libopenmpi-dev openmpi-bin  # parallel runs: ranks launched by mpirun, collectives on host memory
  clang-format git       # the style test
  libcpp-httplib-dev     # skyreels serve (HTTP)
  python3 chromium chromium-driver python3-selenium  # the server's API tests and its page in a headless browser
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
