# Weight blocks of the text encoders and the VAE: every weight in exactly one block, and a forward through a
# copying BlockWeightProvider bit-identical to one on the loaded weights, acquiring exactly blocks_used().
skyreels_test(test_model_blocks LABELS "residency;text;vae" SOURCES test_model_blocks.cpp)
