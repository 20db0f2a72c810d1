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

// ---------------------------------------------------------------------------------------------------------
// Decoding: the tiles in the order the loops below visit them, and where each one is decoded.

namespace {

// One decoder run: latent ranges [t0, t1) x [y0, y1) x [x0, x1).
struct TileJob {
    int64_t t0, t1, y0, y1, x0, x1;
};

// The spatial tiles of tiled_decode over latent rows [0, h) and columns [0, w), in its visiting order.
void add_spatial_jobs(std::vector<TileJob>& jobs, int64_t t0, int64_t t1, int64_t h, int64_t w, const VAETiling& t,
                      int64_t r) {
    const int64_t lat_min_h = t.tile_sample_min_height / r, lat_min_w = t.tile_sample_min_width / r;
    const int64_t lat_stride_h = t.tile_sample_stride_height / r, lat_stride_w = t.tile_sample_stride_width / r;
    for (int64_t i = 0; i < h; i += lat_stride_h)
        for (int64_t j = 0; j < w; j += lat_stride_w)
            jobs.push_back({t0, t1, i, std::min(i + lat_min_h, h), j, std::min(j + lat_min_w, w)});
}

}  // namespace

class HunyuanVideoVAE::TileRuns {
public:
    TileRuns(const HunyuanVideoVAE& vae, Backend& be, const Decoder& dec, const Tensor& z, Communicator* comm)
        // A plan counts every rank as rank 0, which decodes its share and also blends: an upper bound.
        : vae_(vae),
          be_(be),
          dec_(dec),
          z_(z),
          comm_(comm && comm->size() > 1 && !host_values_skipped() ? comm : nullptr) {}

    // Parallel runs: the tiles in visiting order, known before the first is decoded.
    void set_jobs(std::vector<TileJob> jobs) { jobs_ = std::move(jobs); }
    bool parallel() const { return comm_ != nullptr; }
    bool root() const { return !comm_ || comm_->rank() == 0; }

    // The next tile's decoded result on the host, for `tile_z` (the input the loop cut).
    Tensor decoded(const Tensor& tile_z) {
        if (host_values_skipped())
            return planned_run(be_, planned_, tile_z.shape().str(),
                               [&] { return to_host(be_, vae_.run_decoder(be_, dec_, tile_z, {})); });
        if (!comm_) return to_host(be_, vae_.run_decoder(be_, dec_, tile_z, {}));
        const size_t k = next_++;
        SR_ASSERT(k < jobs_.size() && tile_z.shape() == input(jobs_[k]).shape(), "tile {} of {}: {}", k, jobs_.size(),
                  tile_z.describe());
        if (k >= wave_begin_ + wave_.size()) run_wave(k);
        return std::move(wave_[k - wave_begin_]);
    }

    // Ranks other than 0: decode their share of every wave and send it to rank 0.
    void serve() {
        for (size_t first = 0; first < jobs_.size(); first += size_t(comm_->size())) run_wave(first);
    }

private:
    Tensor input(const TileJob& j) const {
        const Tensor v = z_.slice(2, j.t0, j.t1).slice(3, j.y0, j.y1).slice(4, j.x0, j.x1);
        return v.is_contiguous() ? v : v.contiguous();
    }
    Shape output_shape(const TileJob& j) const {
        const auto& c = vae_.config();
        return {z_.dim(0), c.out_channels, (j.t1 - j.t0 - 1) * c.temporal_compression_ratio + 1,
                (j.y1 - j.y0) * c.spatial_compression_ratio, (j.x1 - j.x0) * c.spatial_compression_ratio};
    }
    // Jobs [first, first + P): rank p decodes job first + p; rank 0 receives them all.
    void run_wave(size_t first) {
        const size_t P = size_t(comm_->size()), mine = first + size_t(comm_->rank());
        const Tensor send = mine < jobs_.size() ? to_host(be_, vae_.run_decoder(be_, dec_, input(jobs_[mine]), {}))
                                                : Tensor::empty({0}, DType::F32, host_allocator());
        wave_.clear();
        if (root())
            for (size_t p = 0; p < P; ++p)
                wave_.push_back(Tensor::empty(first + p < jobs_.size() ? output_shape(jobs_[first + p]) : Shape{0},
                                              DType::F32, host_allocator(), "VAE tile from another rank"));
        comm_->gather(send, wave_, 0);
        wave_begin_ = first;
    }

    const HunyuanVideoVAE& vae_;
    Backend& be_;
    const Decoder& dec_;
    const Tensor& z_;
    Communicator* comm_;
    PlannedTileShapes planned_;
    std::vector<TileJob> jobs_;
    size_t next_ = 0, wave_begin_ = 0;
    std::vector<Tensor> wave_;
};

void HunyuanVideoVAE::decode_frames(Backend& be, const Decoder& dec, const Tensor& z, const VAETiling& t,
                                    const VAEFrameSink& sink, Communicator* tiles) const {
    const int64_t r = config_.spatial_compression_ratio, tr = config_.temporal_compression_ratio;
    const int64_t T = z.dim(2), h = z.dim(3), w = z.dim(4);
    TileRuns runs(*this, be, dec, z, tiles);
    // Quirks of _decode in this version, reproduced: the temporal path is taken whenever framewise decoding
    // is on (the default, even without enable_tiling) and there are more than min_num_frames/4 latent frames;
    // the spatial test compares the width with the STRIDE width (not the min width); inside the temporal path
    // the spatial test uses the min width.
    const bool temporal = t.use_framewise_decoding && T > t.tile_sample_min_num_frames / tr;
    const bool spatial = temporal
                             ? t.use_tiling && (w > t.tile_sample_min_width / r || h > t.tile_sample_min_height / r)
                             : t.use_tiling && (w > t.tile_sample_stride_width / r || h > t.tile_sample_min_height / r);
    if (runs.parallel()) {
        std::vector<TileJob> jobs;
        if (temporal) {
            const int64_t lat_min_f = t.tile_sample_min_num_frames / tr,
                          lat_stride_f = t.tile_sample_stride_num_frames / tr;
            for (int64_t i = 0; i < T; i += lat_stride_f) {
                const int64_t t1 = std::min(i + lat_min_f + 1, T);
                if (spatial)
                    add_spatial_jobs(jobs, i, t1, h, w, t, r);
                else
                    jobs.push_back({i, t1, 0, h, 0, w});
            }
        } else if (spatial) {
            add_spatial_jobs(jobs, 0, T, h, w, t, r);
        } else {
            jobs.push_back({0, T, 0, h, 0, w});
        }
        runs.set_jobs(std::move(jobs));
        if (!runs.root()) return runs.serve();
    }
    if (temporal) return temporal_tiled_decode(be, z, t, sink, runs);
    if (spatial) return sink(tiled_decode(be, z, t, runs), 0);
    sink(runs.decoded(z), 0);
}

Tensor HunyuanVideoVAE::tiled_decode(Backend& be, const Tensor& z, const VAETiling& t, TileRuns& runs) const {
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
            Tensor tile = runs.decoded(tile_z);  // [B, out, F, 8th, 8tw]
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

void HunyuanVideoVAE::temporal_tiled_decode(Backend& be, const Tensor& z, const VAETiling& t, const VAEFrameSink& sink,
                                            TileRuns& runs) const {
    const int64_t tr = config_.temporal_compression_ratio, r = config_.spatial_compression_ratio;
    const int64_t T = z.dim(2), n_sample_frames = (T - 1) * tr + 1;
    const int64_t lat_min_f = t.tile_sample_min_num_frames / tr, lat_stride_f = t.tile_sample_stride_num_frames / tr;
    const int64_t blend_f = t.tile_sample_min_num_frames - t.tile_sample_stride_num_frames;  // sample frames
    // Inside the temporal path the spatial test uses the min width (unlike _decode, which uses the stride).
    const bool spatial =
        t.use_tiling && (z.dim(4) > t.tile_sample_min_width / r || z.dim(3) > t.tile_sample_min_height / r);
    Tensor prev;
    int64_t emitted = 0;
    PlannedTileShapes planned_temporal;
    for (int64_t i = 0; i < T; i += lat_stride_f) {
        // lat_min_f + 1 latents per tile; the last tiles may hold a single latent (one frame, then dropped).
        const Tensor tile_z = packed(z.slice(2, i, std::min(i + lat_min_f + 1, T)));
        // A plan's host peak also depends on the previous tile held meanwhile: part of the key.
        const std::string key = tile_z.shape().str() + (prev.defined() ? " after " + prev.shape().str() : "");
        Tensor tile = planned_run(be, planned_temporal, key,
                                  [&] { return spatial ? tiled_decode(be, tile_z, t, runs) : runs.decoded(tile_z); });
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
