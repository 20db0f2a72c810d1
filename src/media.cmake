# Media: skyreels_media (video writer, image reader), io layer; links skyreels_core and FFmpeg / image libs.
