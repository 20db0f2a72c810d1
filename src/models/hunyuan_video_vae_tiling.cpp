// The tiled paths of AutoencoderKLHunyuanVideo: tiled_encode, _temporal_tiled_encode, tiled_decode and
// _temporal_tiled_decode, with the reference's exact semantics (docs/VAE.md lists the quirks).
// ref: diffusers v0.32.2 src/diffusers/models/autoencoders/autoencoder_kl_hunyuan_video.py
//
// Two things decide the numbers and are easy to get wrong:
//  - blend_v / blend_h / blend_t write into the LATER tile in place, and tiles are visited in raster order,
//    so the neighbour a tile is blended with is that neighbour after its own blending;
//  - each tile's output is a crop of the blended tile, and crops are concatenated, so an output position is
//    the running sum of the crop sizes before it (not tile index x stride when a stride is not a multiple of
//    the compression ratio), then the whole is cut to the expected size.
// Since a tile is final once blended with its upper/left/previous neighbours, we never hold all tiles: the
// spatial paths keep one row of tiles, the temporal decode keeps the previous temporal tile and hands each
// crop to the sink at once.
// Tiles are cut from the input on the host, uploaded one at a time, and their results come back to the host,
// where blending and placement happen (in f32, as the reference does them); the outputs are host tensors.
// The transfers are the size of the output video, small next to the decoder's work per tile.
#include <algorithm>

#include "models/hunyuan_video_vae.h"

namespace sr {

namespace {

// b[.., y, ..] = a[.., n_a - e + y, ..] * (1 - y/e) + b[.., y, ..] * (y/e) along `axis`, y < e,
// e = min(a.dim(axis), b.dim(axis), extent), in place on b. Host f32 tensors of equal shape off `axis`.
void blend(const Tensor& a, Tensor& b, int axis, int64_t extent) {
    const int64_t e = host_values_skipped() ? 0 : std::min({a.dim(axis), b.dim(axis), extent});
    for (int64_t y = 0; y < e; ++y) {
        // The reference multiplies f32 tensors by Python floats: each weight is rounded to f32 once.
        const float wb = float(double(y) / double(e)), wa = float(1.0 - double(y) / double(e));
        const Tensor as = a.select(axis, a.dim(axis) - e + y);
        Tensor bs = b.select(axis, y);
        SR_ASSERT(as.shape() == bs.shape(), "blend of {} into {}", a.describe(), b.describe());
        const float* pa = as.data<float>();
        float* pb = bs.data<float>();
        for (int64_t i0 = 0; i0 < bs.dim(0); ++i0)
            for (int64_t i1 = 0; i1 < bs.dim(1); ++i1)
                for (int64_t i2 = 0; i2 < bs.dim(2); ++i2)
                    for (int64_t i3 = 0; i3 < bs.dim(3); ++i3) {
                        const float va =
                            pa[i0 * as.stride(0) + i1 * as.stride(1) + i2 * as.stride(2) + i3 * as.stride(3)];
                        float& vb = pb[i0 * bs.stride(0) + i1 * bs.stride(1) + i2 * bs.stride(2) + i3 * bs.stride(3)];
                        vb = va * wa + vb * wb;
                    }
    }
}

// Copies tile[..., :crop_h, :crop_w] to out[..., y0:, x0:], clipped to out (the reference's final cut). Host
// tensors.
void place(const Tensor& tile, int64_t crop_h, int64_t crop_w, Tensor& out, int64_t y0, int64_t x0) {
    const int64_t h = std::min({crop_h, tile.dim(3), out.dim(3) - y0});
    const int64_t w = std::min({crop_w, tile.dim(4), out.dim(4) - x0});
    if (h <= 0 || w <= 0 || host_values_skipped()) return;
    Tensor dst = out.slice(3, y0, y0 + h).slice(4, x0, x0 + w);
    dst.copy_from(tile.slice(3, 0, h).slice(4, 0, w));
}

// t.contiguous(), but only the allocation when a plan skips host values (core/allocator.h).
Tensor packed(const Tensor& t) {
    if (t.is_contiguous() || !host_values_skipped()) return t.contiguous();
    return Tensor::empty(t.shape(), t.dtype(), host_allocator(), "VAE tile");
}

// run() (a tile's decode, brought to the host), except in a plan (host_values_skipped()) when a run with the
// same `key` came before: then the device's peak is raised by what that run added to it, and only the result
// is made, where run() makes it (on the device, then brought to the host: on the CPU the same memory). At the
// largest video sizes a plan meets tens of millions of tiles of a handful of shapes.
template <class Planned, class Run>
Tensor planned_run(Backend& be, Planned& planned, const std::string& key, Run&& run) {
    if (!host_values_skipped()) return run();
    Allocator& device = be.allocator();
    const size_t before = device.in_use_bytes();
    if (auto it = planned.find(key); it != planned.end()) {
        device.note_peak(before + it->second.peak_delta);
        return to_host(be, new_activation(be, it->second.shape, "VAE tile"));
    }
    const size_t outer_peak = device.peak_bytes();
    device.reset_peak();
    Tensor out = run();
    planned.emplace(key, typename Planned::mapped_type{out.shape(), device.peak_bytes() - before});
    device.note_peak(outer_peak);
    return out;
}

}  // namespace

Tensor HunyuanVideoVAE::encode_moments(Backend& be, const Encoder& enc, const Tensor& x, const VAETiling& t,
                                       const VAEIntermediateHook& hook) const {
    // _encode tests use_framewise_DECODING here (a slip upstream); both default to true. Reproduced.
    if (t.use_framewise_decoding && x.dim(2) > t.tile_sample_min_num_frames)
        return temporal_tiled_encode(be, enc, x, t);
    if (t.use_tiling && (x.dim(4) > t.tile_sample_min_width || x.dim(3) > t.tile_sample_min_height))
        return tiled_encode(be, enc, x, t);
    return run_encoder(be, enc, x, hook);
}

Tensor HunyuanVideoVAE::tiled_encode(Backend& be, const Encoder& enc, const Tensor& x, const VAETiling& t) const {
    const int64_t r = config_.spatial_compression_ratio, H = x.dim(3), W = x.dim(4);
    const int64_t lat_min_h = t.tile_sample_min_height / r, lat_min_w = t.tile_sample_min_width / r;
    const int64_t lat_stride_h = t.tile_sample_stride_height / r, lat_stride_w = t.tile_sample_stride_width / r;
    const int64_t blend_h = lat_min_h - lat_stride_h, blend_w = lat_min_w - lat_stride_w;  // latent units
    Tensor out;
    std::vector<Tensor> prev_row, row;
    int64_t y0 = 0;
    for (int64_t i = 0; i < H; i += t.tile_sample_stride_height) {
        row.clear();
        int64_t x0 = 0, row_h = 0;
        for (int64_t j = 0; j < W; j += t.tile_sample_stride_width) {
            const Tensor tile_x = x.slice(3, i, std::min(i + t.tile_sample_min_height, H))
                                      .slice(4, j, std::min(j + t.tile_sample_min_width, W))
                                      .contiguous();
            Tensor tile = to_host(be, run_encoder(be, enc, tile_x, {}));  // [B, 2*latent, T, th, tw]
            if (!out.defined())
                out = Tensor::empty({x.dim(0), tile.dim(1), tile.dim(2), H / r, W / r}, DType::F32, host_allocator(),
                                    "VAE tiled encode output");
            if (!prev_row.empty()) blend(prev_row[row.size()], tile, 3, blend_h);
            if (!row.empty()) blend(row.back(), tile, 4, blend_w);
            place(tile, lat_stride_h, lat_stride_w, out, y0, x0);
            x0 += std::min(lat_stride_w, tile.dim(4));
            row_h = std::min(lat_stride_h, tile.dim(3));
            row.push_back(std::move(tile));
        }
        y0 += row_h;
        prev_row = std::move(row);
    }
    return out;
}

Tensor HunyuanVideoVAE::temporal_tiled_encode(Backend& be, const Encoder& enc, const Tensor& x,
                                              const VAETiling& t) const {
    const int64_t tr = config_.temporal_compression_ratio, r = config_.spatial_compression_ratio;
    const int64_t F = x.dim(2), latent_frames = (F - 1) / tr + 1;
    const int64_t lat_stride_f = t.tile_sample_stride_num_frames / tr;
    const int64_t blend_f = t.tile_sample_min_num_frames / tr - lat_stride_f;  // latent frames
    Tensor out, prev;
    int64_t pos = 0;
    for (int64_t i = 0; i < F; i += t.tile_sample_stride_num_frames) {
        // Tiles of min_num_frames + 1 frames: the extra frame is the causal "first" frame of the tile.
        const Tensor tile_x = x.slice(2, i, std::min(i + t.tile_sample_min_num_frames + 1, F)).contiguous();
        Tensor tile = t.use_tiling && (x.dim(3) > t.tile_sample_min_height || x.dim(4) > t.tile_sample_min_width)
                          ? tiled_encode(be, enc, tile_x, t)
                          : to_host(be, run_encoder(be, enc, tile_x, {}));
        if (!out.defined())
            out = Tensor::empty({x.dim(0), tile.dim(1), latent_frames, x.dim(3) / r, x.dim(4) / r}, DType::F32,
                                host_allocator(), "VAE temporal tiled encode output");
        if (i > 0) {
            tile = tile.slice(2, 1, tile.dim(2)).contiguous();  // drop the latent of the overlap frame
            blend(prev, tile, 2, blend_f);
        }
        const int64_t n = std::min(i > 0 ? lat_stride_f : lat_stride_f + 1, tile.dim(2));
        const int64_t m = std::min(n, latent_frames - pos);
        if (m > 0) {
            Tensor dst = out.slice(2, pos, pos + m);
            dst.copy_from(tile.slice(2, 0, m));
        }
        pos += n;
        prev = std::move(tile);
    }
    return out;
}

Tensor HunyuanVideoVAE::tiled_decode(Backend& be, const Decoder& dec, const Tensor& z, const VAETiling& t,
                                     PlannedTileShapes& planned) const {
    const int64_t r = config_.spatial_compression_ratio, h = z.dim(3), w = z.dim(4);
    const int64_t lat_min_h = t.tile_sample_min_height / r, lat_min_w = t.tile_sample_min_width / r;
    const int64_t lat_stride_h = t.tile_sample_stride_height / r, lat_stride_w = t.tile_sample_stride_width / r;
    const int64_t blend_h = t.tile_sample_min_height - t.tile_sample_stride_height;  // sample pixels
    const int64_t blend_w = t.tile_sample_min_width - t.tile_sample_stride_width;
    Tensor out = Tensor::empty(
        {z.dim(0), config_.out_channels, (z.dim(2) - 1) * config_.temporal_compression_ratio + 1, h * r, w * r},
        DType::F32, host_allocator(), "VAE tiled decode output");
    std::vector<Tensor> prev_row, row;
    int64_t y0 = 0;
    for (int64_t i = 0; i < h; i += lat_stride_h) {
        row.clear();
        int64_t x0 = 0, row_h = 0;
        for (int64_t j = 0; j < w; j += lat_stride_w) {
            const Tensor tile_z =
                packed(z.slice(3, i, std::min(i + lat_min_h, h)).slice(4, j, std::min(j + lat_min_w, w)));
            Tensor tile = planned_run(be, planned, tile_z.shape().str(), [&] {
                return to_host(be, run_decoder(be, dec, tile_z, {}));  // [B, out, F, 8th, 8tw]
            });
            if (!prev_row.empty()) blend(prev_row[row.size()], tile, 3, blend_h);
            if (!row.empty()) blend(row.back(), tile, 4, blend_w);
            place(tile, t.tile_sample_stride_height, t.tile_sample_stride_width, out, y0, x0);
            x0 += std::min(t.tile_sample_stride_width, tile.dim(4));
            row_h = std::min(t.tile_sample_stride_height, tile.dim(3));
            row.push_back(std::move(tile));
        }
        y0 += row_h;
        prev_row = std::move(row);
    }
    return out;
}

void HunyuanVideoVAE::temporal_tiled_decode(Backend& be, const Decoder& dec, const Tensor& z, const VAETiling& t,
                                            const VAEFrameSink& sink) const {
    const int64_t tr = config_.temporal_compression_ratio, r = config_.spatial_compression_ratio;
    const int64_t T = z.dim(2), n_sample_frames = (T - 1) * tr + 1;
    const int64_t lat_min_f = t.tile_sample_min_num_frames / tr, lat_stride_f = t.tile_sample_stride_num_frames / tr;
    const int64_t blend_f = t.tile_sample_min_num_frames - t.tile_sample_stride_num_frames;  // sample frames
    // Inside the temporal path the spatial test uses the min width (unlike _decode, which uses the stride).
    const bool spatial =
        t.use_tiling && (z.dim(4) > t.tile_sample_min_width / r || z.dim(3) > t.tile_sample_min_height / r);
    Tensor prev;
    int64_t emitted = 0;
    PlannedTileShapes planned_spatial, planned_temporal;
    for (int64_t i = 0; i < T; i += lat_stride_f) {
        // lat_min_f + 1 latents per tile; the last tiles may hold a single latent (one frame, then dropped).
        const Tensor tile_z = packed(z.slice(2, i, std::min(i + lat_min_f + 1, T)));
        // A plan's host peak also depends on the previous tile held meanwhile: part of the key.
        const std::string key = tile_z.shape().str() + (prev.defined() ? " after " + prev.shape().str() : "");
        Tensor tile = planned_run(be, planned_temporal, key, [&] {
            return spatial ? tiled_decode(be, dec, tile_z, t, planned_spatial)
                           : to_host(be, run_decoder(be, dec, tile_z, {}));
        });
        if (i > 0) {
            tile = packed(tile.slice(2, 1, tile.dim(2)));  // the overlap latent's frame
            blend(prev, tile, 2, blend_f);
        }
        // This tile's crop is final now (only earlier tiles blend into it): hand it over at once.
        const int64_t n =
            std::min(i > 0 ? t.tile_sample_stride_num_frames : t.tile_sample_stride_num_frames + 1, tile.dim(2));
        const int64_t m = std::min(n, n_sample_frames - emitted);
        if (m > 0) sink(tile.slice(2, 0, m), emitted);
        emitted += std::max<int64_t>(m, 0);
        prev = std::move(tile);
    }
    SR_ASSERT(emitted == n_sample_frames, "temporal tiled decode produced {} of {} frames", emitted, n_sample_frames);
}

}  // namespace sr
