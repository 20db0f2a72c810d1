# Pipeline tests (fixture parity step by step, generate --demo end to end, bad input).
skyreels_test(test_pipeline LABELS "parity;pipeline" SOURCES test_pipeline_parity.cpp)
target_link_libraries(test_pipeline PRIVATE skyreels_pipeline)
# The same parity runs through generate_on_device on the simulated device, which forbids host access to its
# memory: the fixtures' own requests (tiled VAE, masks) cross the host/device boundary correctly.
skyreels_test(test_pipeline_parity_sim LABELS "parity;pipeline;residency" SOURCES test_pipeline_parity.cpp
  ENVIRONMENT "OMP_WAIT_POLICY=passive")
target_compile_definitions(test_pipeline_parity_sim PRIVATE SKYREELS_PIPELINE_PARITY_DEVICE=1)
target_link_libraries(test_pipeline_parity_sim PRIVATE skyreels_pipeline)
skyreels_test(test_generate_cli LABELS "pipeline;cli;bad-input" SOURCES test_generate_cli.cpp)
target_link_libraries(test_generate_cli PRIVATE skyreels_pipeline)
add_dependencies(test_generate_cli skyreels)
skyreels_test(test_device_pipeline LABELS "residency;pipeline" SOURCES test_device_pipeline.cpp
  ENVIRONMENT "OMP_WAIT_POLICY=passive")
target_link_libraries(test_device_pipeline PRIVATE skyreels_pipeline)
# Multi-GB random checkpoint streamed from disk: 3 GB in the Release build, 1 GB under the sanitizers.
# Under ASan, freed memory waits in a 256 MiB quarantine, which the anonymous-memory bound would count:
# shrink it for this test (the leak check stays on).
if(SKYREELS_SANITIZE)
  set(hostmem_env "SKYREELS_HOSTMEM_GB=1;ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=8")
else()
  set(hostmem_env "SKYREELS_HOSTMEM_GB=3")
endif()
skyreels_test(test_host_memory LABELS "residency;hostmem" SOURCES test_host_memory.cpp
  ENVIRONMENT "OMP_WAIT_POLICY=passive;${hostmem_env}")
target_link_libraries(test_host_memory PRIVATE skyreels_runtime)
# The Session: jobs on models loaded once (two videos on the simulated device, cancellation, request checks,
# progress events, scoped log level).
skyreels_test(test_session LABELS "pipeline;session" SOURCES test_session.cpp ENVIRONMENT "OMP_WAIT_POLICY=passive")
target_link_libraries(test_session PRIVATE skyreels_pipeline)
# A job's own LoRA adapters on a Session loaded once (tests/test_lora_jobs.cpp).
skyreels_test(test_lora_jobs LABELS "lora;session" SOURCES test_lora_jobs.cpp ENVIRONMENT "OMP_WAIT_POLICY=passive")
target_link_libraries(test_lora_jobs PRIVATE skyreels_pipeline)
# Hostile values that used to pass silently or take minutes: config values out of range or of the wrong JSON
# type, RoPE axes that overflow, long runs of one character class in a prompt, non-finite latents, names
# with control characters, floods of unused tensors.
skyreels_test(test_hostile_input LABELS "bad-input;text;pipeline" SOURCES test_hostile_input.cpp)
target_link_libraries(test_hostile_input PRIVATE skyreels_pipeline)
# The command line as a SkyReels or sd-cli user meets it (issue-style checks of every flag convention), run on
# the real binary, some under a pseudo-terminal (forkpty: libutil).
skyreels_test(test_cli_ux LABELS "cli" SOURCES test_cli_ux.cpp)
target_link_libraries(test_cli_ux PRIVATE util)
add_dependencies(test_cli_ux skyreels)
# The denoising loop's levers (issue 20): CFG per resident block against whole passes, the batched run and
# every residency mode, and the released model's streaming per step at 8 GiB; checkpoints and resume (a
# Session job stopped at each step, the CLI killed with SIGKILL at a random step, refusals); bf16 activations
# against every transformer and pipeline fixture and in every residency mode (test_denoise_bf16.cpp).
skyreels_test(test_denoise LABELS "denoise" SOURCES test_denoise.cpp test_denoise_bf16.cpp ENVIRONMENT "OMP_WAIT_POLICY=passive")
target_link_libraries(test_denoise PRIVATE skyreels_pipeline)
add_dependencies(test_denoise skyreels)  # the killed-and-resumed run is the real binary
# Step caching (issue 20): TeaCache and first-block cache decisions on every pipeline fixture, the blocks a
# skipped step leaves unmoved, the plan's residual, bad --cache values.
skyreels_test(test_step_cache LABELS "denoise" SOURCES test_step_cache.cpp ENVIRONMENT "OMP_WAIT_POLICY=passive")
target_link_libraries(test_step_cache PRIVATE skyreels_pipeline)
add_dependencies(test_step_cache skyreels)  # the bad --cache values go through the real binary
# The preview of the video while it forms (issue 20): the latent-to-RGB map against the formula on the pipeline
# fixtures, previews at the steps asked (folder of frames, contact sheet, callback), bad --preview values, and the
# video byte-identical with and without previews (the real binary).
skyreels_test(test_preview LABELS "denoise" SOURCES test_preview.cpp ENVIRONMENT "OMP_WAIT_POLICY=passive")
target_link_libraries(test_preview PRIVATE skyreels_pipeline)
add_dependencies(test_preview skyreels)
