# The causal 3-D VAE: model parity on the fixtures (plus a long streamed decode and bad input), and the op
# parity of its four CPU ops against plain double-precision references.
skyreels_test(test_vae LABELS "parity;vae" SOURCES test_vae_parity.cpp)
target_sources(skyreels_test_support PRIVATE support/reference_ops_vae.cpp)
