# Text tests, e.g.
#   skyreels_test(test_text LABELS "parity;text" SOURCES test_tokenizers.cpp)
