# Media tests (video writer checked with ffprobe, image reader, resize-crop).
