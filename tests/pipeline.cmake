# Pipeline tests (fixture parity step by step, generate --demo end to end, bad input).
skyreels_test(test_pipeline LABELS "parity;pipeline" SOURCES test_pipeline_parity.cpp)
target_link_libraries(test_pipeline PRIVATE skyreels_pipeline)
skyreels_test(test_generate_cli LABELS "pipeline;cli;bad-input" SOURCES test_generate_cli.cpp)
target_link_libraries(test_generate_cli PRIVATE skyreels_pipeline)
add_dependencies(test_generate_cli skyreels)
