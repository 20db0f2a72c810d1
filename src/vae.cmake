# The causal 3-D VAE (AutoencoderKLHunyuanVideo): model and tiled paths join skyreels_models. Its CPU ops
# (backends/cpu/vae_ops.cpp) are part of skyreels_backends.
target_sources(skyreels_models PRIVATE models/hunyuan_video_vae.cpp models/hunyuan_video_vae_tiling.cpp)
