# Text layer tests: tokenizer goldens and bad input, encoder parity, and the text ops in the op harness.
target_sources(skyreels_test_support PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/support/reference_ops_text.cpp)
skyreels_test(test_text LABELS "parity;text" SOURCES test_tokenizers.cpp test_text_encoders.cpp)

# `skyreels tokenize`: ids and the limit on the fixture tokenizers; errors exit 1.
if(DEFINED ENV{SKYREELS_FIXTURES})
  set(SKYREELS_TOKENIZER_FIXTURES $ENV{SKYREELS_FIXTURES}/tokenizers)
else()
  set(SKYREELS_TOKENIZER_FIXTURES ${CMAKE_SOURCE_DIR}/../shared/fixtures/tokenizers)
endif()
add_test(NAME cli_tokenize_llama COMMAND skyreels tokenize --tokenizer ${SKYREELS_TOKENIZER_FIXTURES}/llama3 "a cat")
set_tests_properties(cli_tokenize_llama PROPERTIES LABELS "cli;text"
                     PASS_REGULAR_EXPRESSION "\\[128000, 64, 8415\\]\n3 ids; the prompt is 2 tokens")
add_test(NAME cli_tokenize_clip COMMAND skyreels tokenize --tokenizer ${SKYREELS_TOKENIZER_FIXTURES}/clip "A cat")
set_tests_properties(cli_tokenize_clip PROPERTIES LABELS "cli;text" PASS_REGULAR_EXPRESSION "\\[49406, 320, 2368, 49407\\]")
add_test(NAME cli_tokenize_bad_utf8 COMMAND sh -c "$<TARGET_FILE:skyreels> tokenize --tokenizer ${SKYREELS_TOKENIZER_FIXTURES}/llama3 \"$(printf 'a\\377')\"; test $? -eq 1")
set_tests_properties(cli_tokenize_bad_utf8 PROPERTIES LABELS "cli;text;bad-input")
add_test(NAME cli_tokenize_missing_dir COMMAND sh -c "$<TARGET_FILE:skyreels> tokenize --tokenizer /nonexistent x; test $? -eq 1")
set_tests_properties(cli_tokenize_missing_dir PROPERTIES LABELS "cli;text;bad-input")
