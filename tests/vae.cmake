# VAE tests, e.g.
#   skyreels_test(test_vae LABELS "parity;vae" SOURCES test_vae_parity.cpp)
