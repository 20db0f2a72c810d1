# Block quantization and GGUF: the per-block arithmetic against the gguf Python package's reference data
# (tests/data/quant, from scripts/fixtures/make_quant_fixtures.py), the GGUF reader on the shared fixtures and
# on written files, and hostile GGUF files.
skyreels_test(test_quant LABELS "core;quant" SOURCES test_quant.cpp)
skyreels_test(test_gguf LABELS "io;quant" SOURCES test_gguf.cpp)
skyreels_test(test_gguf_bad LABELS "io;quant;bad-input" SOURCES test_gguf_bad.cpp)
