#include "media/apng.h"

#include <array>
#include <cstring>
#include <string>

#include <zlib.h>

#include "core/error.h"

namespace sr {

namespace {

void put32(std::vector<uint8_t>& out, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}
void put16(std::vector<uint8_t>& out, uint16_t v) {
    out.push_back(uint8_t(v >> 8));
    out.push_back(uint8_t(v));
}
uint32_t get32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

void chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
    put32(out, uint32_t(data.size()));
    const size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data.begin(), data.end());
    put32(out, uint32_t(::crc32(0L, out.data() + start, uInt(out.size() - start))));  // PNG's CRC is zlib's
}

struct Chunk {
    std::string type;
    std::vector<uint8_t> data;
};

// The chunks of a PNG that libpng just wrote (trusted input: only the lengths are checked).
std::vector<Chunk> chunks_of(const std::vector<uint8_t>& png) {
    std::vector<Chunk> out;
    size_t pos = 8;
    while (pos + 12 <= png.size()) {
        const uint32_t n = get32(png.data() + pos);
        SR_ASSERT(pos + 12 + n <= png.size(), "PNG chunk past the end");
        out.push_back({std::string(reinterpret_cast<const char*>(png.data() + pos + 4), 4),
                       std::vector<uint8_t>(png.begin() + long(pos + 8), png.begin() + long(pos + 8 + n))});
        pos += 12 + n;
    }
    return out;
}

// fcTL: the frame's sequence number, size, offset 0,0, delay 1/fps s, dispose none, blend source (each frame
// replaces the whole canvas).
std::vector<uint8_t> frame_control(uint32_t sequence, const Image8& f, int fps) {
    std::vector<uint8_t> d;
    put32(d, sequence);
    put32(d, uint32_t(f.width));
    put32(d, uint32_t(f.height));
    put32(d, 0);
    put32(d, 0);
    put16(d, 1);
    put16(d, uint16_t(fps));
    d.push_back(0);  // APNG_DISPOSE_OP_NONE
    d.push_back(0);  // APNG_BLEND_OP_SOURCE
    return d;
}

}  // namespace

std::vector<uint8_t> encode_apng(const std::vector<Image8>& frames, int fps, const PngText& text) {
    SR_THROW_IF(frames.empty(), "animated PNG: no frames");
    SR_THROW_IF(fps < 1 || fps > 1000, "animated PNG: {} frames a second (1..1000)", fps);
    for (const Image8& f : frames)
        SR_THROW_IF(f.width != frames[0].width || f.height != frames[0].height,
                    "animated PNG: a frame of {}x{} among frames of {}x{}", f.width, f.height, frames[0].width,
                    frames[0].height);
    static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::vector<uint8_t> out(kSignature, kSignature + 8);
    uint32_t sequence = 0;
    // Frame 0 is the PNG's own image: its chunks as libpng wrote them (IHDR, text, IDAT), with acTL after IHDR
    // and an fcTL before the first IDAT.
    bool controlled = false;
    for (const Chunk& c : chunks_of(encode_png(frames[0], text))) {
        if (c.type == "IEND") break;
        if (c.type == "IDAT" && !controlled) {
            chunk(out, "fcTL", frame_control(sequence++, frames[0], fps));
            controlled = true;
        }
        chunk(out, c.type.c_str(), c.data);
        if (c.type == "IHDR") {
            std::vector<uint8_t> actl;
            put32(actl, uint32_t(frames.size()));
            put32(actl, 0);  // loop for ever
            chunk(out, "acTL", actl);
        }
    }
    // The others: their compressed data as fdAT chunks, each with the next sequence number.
    for (size_t i = 1; i < frames.size(); ++i) {
        chunk(out, "fcTL", frame_control(sequence++, frames[i], fps));
        for (const Chunk& c : chunks_of(encode_png(frames[i])))
            if (c.type == "IDAT") {
                std::vector<uint8_t> d;
                put32(d, sequence++);
                d.insert(d.end(), c.data.begin(), c.data.end());
                chunk(out, "fdAT", d);
            }
    }
    chunk(out, "IEND", {});
    return out;
}

}  // namespace sr
