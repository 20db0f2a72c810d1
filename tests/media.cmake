# Media tests (video writer checked with ffprobe, image reader against the reference's fixtures, resize-crop).
# libjpeg writes the JPEGs some tests need.
pkg_check_modules(JPEG_FOR_TESTS REQUIRED IMPORTED_TARGET libjpeg)
skyreels_test(test_media LABELS "media;bad-input" SOURCES test_media.cpp test_image_fixtures.cpp)
target_link_libraries(test_media PRIVATE skyreels_media PkgConfig::JPEG_FOR_TESTS)
# Faults from outside a run: FIFOs and symlink loops as inputs, planted symlinks and concurrent writers at the
# output, SIGHUP, SIGBUS from a checkpoint cut short while mapped, SIGINT ignored at start.
skyreels_test(test_faults LABELS "fault;media" SOURCES test_faults.cpp)
target_link_libraries(test_faults PRIVATE skyreels_media)
