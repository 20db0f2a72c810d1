# Pipeline tests (fixture parity step by step, generate --demo end to end, bad input).
