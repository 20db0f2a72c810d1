# Media tests (video writer checked with ffprobe, image reader, resize-crop).
skyreels_test(test_media LABELS "media;bad-input" SOURCES test_media.cpp)
target_link_libraries(test_media PRIVATE skyreels_media)
