# The causal 3-D VAE: its sources join skyreels_models, e.g.
#   target_sources(skyreels_models PRIVATE models/hunyuan_video_vae.cpp)
