// Fuzz target: image files (the I2V conditioning image comes from users) through decode_image, the format
// sniffing and the libpng / libjpeg-turbo decoders behind load_image, and its EXIF orientation parser. A
// rejected input must be an sr::InputError; an accepted one must be within the size limits with the right
// number of bytes, and small ones also go through skyreels_resize_crop. Seeds: small PNGs and JPEGs of every
// kind written here, plus the real files of tests/data/image_seeds (cameras' JPEGs, every PNG colour type).
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_target.h"
#include "media/exif_orientation.h"
#include "media/image.h"

namespace {

std::optional<uint64_t> run_one(const uint8_t* data, size_t size) {
    // The EXIF parser sees every input, decodable or not (its reads are bounds-checked; it never throws).
    const int orientation = sr::exif_orientation(data, size);
    if (orientation < 1 || orientation > 8) throw std::logic_error("EXIF orientation " + std::to_string(orientation));
    sr::Image8 img;
    try {
        img = sr::decode_image(data, size, "fuzz");
    } catch (const sr::InputError&) {
        return std::nullopt;
    }
    if (img.width < 1 || img.height < 1 || img.width > sr::kMaxImageSide || img.height > sr::kMaxImageSide ||
        img.width * img.height > sr::kMaxImagePixels || img.rgb.size() != size_t(img.width * img.height * 3))
        throw std::logic_error("accepted image of " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                               " with " + std::to_string(img.rgb.size()) + " bytes");
    if (img.width * img.height <= 4096) {
        // A very thin image may crop to nothing at this aspect ratio (PIL would fail too): an InputError.
        try {
            const sr::Tensor out = sr::skyreels_resize_crop(img, 16, 24);
            if (out.dim(1) != 16 || out.dim(2) != 24) throw std::logic_error("resize-crop gave " + out.describe());
        } catch (const sr::InputError&) {
        }
    }
    uint64_t sig = sr::fuzz::kMixStart;
    sig = sr::fuzz::mix(sig, uint64_t(img.height % 64) * 64 + uint64_t(img.width % 64));
    sig = sr::fuzz::mix(sig, uint64_t(data[0]));  // PNG and JPEG results are told apart
    return sig;
}

// Small valid PNGs (grey-looking, colourful, 1x1) written by encode_png, and PNG/JPEG files with EXIF blocks.
// The real-file seeds (every JPEG and PNG kind) come from the corpus folder ctest passes.
std::vector<std::string> seeds() {
    std::vector<std::string> out;
    const int64_t sizes[][2] = {{1, 1}, {3, 5}, {16, 9}};
    for (const auto& hw : sizes) {
        sr::Image8 img;
        img.height = hw[0], img.width = hw[1];
        img.rgb.resize(size_t(hw[0] * hw[1] * 3));
        for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t((i * 37) % 256);
        const std::vector<uint8_t> png = sr::encode_png(img);
        out.emplace_back(png.begin(), png.end());
    }
    out.push_back(std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9", 22));
    // EXIF: a TIFF block with IFD0's Orientation (6, big-endian), in a JPEG APP1 segment and a PNG eXIf chunk
    // (after the first seed's IHDR; its CRC is wrong, which libpng reports as a benign ancillary-chunk error).
    const std::string tiff(
        "MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
        "\x00\x00\x00\x00",
        26);
    const std::string app1 = std::string("Exif\0\0", 6) + tiff;
    out.push_back(std::string("\xff\xd8\xff\xe1", 4) + char((app1.size() + 2) >> 8) + char((app1.size() + 2) & 0xff) +
                  app1 + std::string("\xff\xd9", 2));
    out.push_back(out[0].substr(0, 33) + std::string("\x00\x00\x00", 3) + char(tiff.size()) + "eXIf" + tiff +
                  std::string(4, '\0') + out[0].substr(33));
    return out;
}

std::vector<std::string> dictionary() {
    std::vector<std::string> d;
    for (const char* t : {"IHDR", "IDAT", "IEND", "PLTE", "tRNS", "JFIF", "Exif"}) d.emplace_back(t);
    d.emplace_back("\x89PNG\r\n\x1a\n", 8);
    d.emplace_back("\xff\xd8", 2);
    d.emplace_back("\xff\xc0", 2);
    d.emplace_back("\xff\xc2", 2);
    d.emplace_back("\xff\xc4", 2);
    d.emplace_back("\xff\xda", 2);
    d.emplace_back("\xff\xd9", 2);
    d.emplace_back("\x00\x00\x40\x00", 4);  // 16384
    d.emplace_back("\x00\x00\x40\x01", 4);  // 16385
    d.emplace_back("\xff\xff\xff\xff", 4);
    d.emplace_back("\x00\x00\x00\x00", 4);
    return d;
}

}  // namespace

SR_FUZZ_TARGET("fuzz_image", false)
