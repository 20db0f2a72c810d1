# The text layer: tokenizers and text encoders, a target of its own that links only downward, e.g.
#   add_library(skyreels_text STATIC text/bpe_tokenizer.cpp ...)
#   target_link_libraries(skyreels_text PUBLIC skyreels_backends skyreels_io PkgConfig::PCRE2)
