# The generation pipeline: skyreels_pipeline (scheduler, T2V/I2V, CFG, demo model).
