# Media: skyreels_media (video writer, image reader), io layer; links skyreels_core and FFmpeg / image libs.
# FFmpeg 5.1's libraries for H.264/MP4 output; Debian's libstb (which already holds the stb_image and
# stb_image_write implementations: never define STB_IMAGE_IMPLEMENTATION) for PNG/JPEG in and PNG out.
pkg_check_modules(FFMPEG REQUIRED IMPORTED_TARGET libavcodec libavformat libavutil libswscale)
pkg_check_modules(STB REQUIRED IMPORTED_TARGET stb)

add_library(skyreels_media STATIC
  media/exif_orientation.cpp
  media/image.cpp
  media/partial_files.cpp
  media/video_writer.cpp)
target_link_libraries(skyreels_media PUBLIC skyreels_core PRIVATE PkgConfig::FFMPEG PkgConfig::STB)
