# Media: skyreels_media (video writer, image reader), io layer; links skyreels_core and FFmpeg / image libs.
# FFmpeg 5.1's libraries for H.264/MP4 output. The I2V image is read by the decoders the reference's Pillow
# uses, so its pixels are the reference's: libjpeg-turbo (Debian's libjpeg62-turbo) and libpng (which also
# writes the PNG frames).
pkg_check_modules(FFMPEG REQUIRED IMPORTED_TARGET libavcodec libavformat libavutil libswscale)
pkg_check_modules(IMAGE_CODECS REQUIRED IMPORTED_TARGET libjpeg libpng zlib)

add_library(skyreels_media STATIC
  media/exif_orientation.cpp
  media/image.cpp
  media/jpeg_decoder.cpp
  media/pil_resample.cpp
  media/png_codec.cpp
  media/png_frames.cpp
  media/apng.cpp
  media/partial_files.cpp
  media/video_writer.cpp)
target_link_libraries(skyreels_media PUBLIC skyreels_core PRIVATE PkgConfig::FFMPEG PkgConfig::IMAGE_CODECS)
