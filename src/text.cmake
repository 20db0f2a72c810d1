# The text layer: tokenizers (PCRE2 for the pre-tokenizer regexes, ICU for CLIP's Unicode cleanup) and the
# Llama / CLIP text encoders, built on the nn layer (Linear, weight declarations, weight blocks).
pkg_check_modules(ICU_UC REQUIRED IMPORTED_TARGET icu-uc)

add_library(skyreels_text STATIC
  text/bpe_tokenizer.cpp
  text/clip_tokenizer.cpp
  text/llama_text_encoder.cpp
  text/clip_text_encoder.cpp
  text/prompt_encoder.cpp)
target_link_libraries(skyreels_text PUBLIC skyreels_nn PkgConfig::PCRE2
                                    PRIVATE PkgConfig::ICU_UC)
