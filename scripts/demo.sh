#!/usr/bin/env bash
# The one command to see skyreels.cpp work: installs what is missing, builds the CLI, and generates a short
# video with the built-in tiny random-weight model (text-to-video, then image-to-video). Random weights
# give noise, not a picture; for real videos run build/skyreels generate --model <SkyReels-V1 folder>
# --base <HunyuanVideo folder>.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target skyreels -j "$(nproc)"

build/skyreels generate --demo --prompt "FPS-24, A cat walks on the grass, realistic style." --out demo.mp4
build/skyreels generate --demo --task i2v --prompt "FPS-24, The scene comes to life." --out demo_i2v.mp4
# The T2V job again on the simulated accelerator with the large demo transformer (73 MiB), within a 72 MiB
# device budget with block offload and weights staged from the page cache: the denoising streams 6 of its 8
# blocks, 74 MiB per step. The memory plan is made first, and the report compares it with what was measured
# (docs/MEMORY.md).
build/skyreels generate --demo --demo-size large --device sim --offload block --vram-budget 72M --host-memory mmap \
  --memory-report --prompt "FPS-24, A cat walks on the grass, realistic style." --out demo_sim.mp4
echo "demo videos: $(pwd)/demo.mp4 $(pwd)/demo_i2v.mp4 $(pwd)/demo_sim.mp4"
