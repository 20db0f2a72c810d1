# The generation pipeline: skyreels_pipeline (scheduler, T2V/I2V, CFG, demo model, progress, memory plan, device
# runs, denoising checkpoints and previews, and the Session that runs jobs on loaded models).
add_library(skyreels_pipeline STATIC
  pipeline/flow_match_scheduler.cpp
  pipeline/pipeline.cpp
  pipeline/demo_model.cpp
  pipeline/progress.cpp
  pipeline/weight_placement.cpp
  pipeline/memory_plan.cpp
  pipeline/device_run.cpp
  pipeline/session.cpp
  pipeline/checkpoint.cpp
  pipeline/latent_preview.cpp
  pipeline/preview_files.cpp)
target_link_libraries(skyreels_pipeline PUBLIC skyreels_models skyreels_text skyreels_runtime)
if(TARGET skyreels_media)
  target_link_libraries(skyreels_pipeline PUBLIC skyreels_media)
  target_compile_definitions(skyreels_pipeline PUBLIC SKYREELS_HAVE_MEDIA=1)
endif()
