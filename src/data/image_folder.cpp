// Folders of images, decoded by stb_image (Debian's libstb), and the 8-bit
// image -> float conversion shared with IDX images: bilinear resize, scale,
// per-channel mean / stddev, layout.
#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>

#include "data/data_internal.h"
#include "qforge/data.h"

namespace qforge {
namespace data_detail {

void validate_image_options(const ImageOptions& o, int64_t channels, const std::string& subject) {
  check((o.height == 0) == (o.width == 0) && o.height >= 0 && o.width >= 0, Errc::kInvalidArgument,
        subject, "resize to " + std::to_string(o.height) + " x " + std::to_string(o.width),
        "both height and width > 0, or both 0 to keep the size");
  const int64_t pixels = checked_mul(o.height, o.width);
  check(pixels >= 0 && pixels <= kMaxImagePixels, Errc::kInvalidArgument, subject,
        "resize to " + std::to_string(o.height) + " x " + std::to_string(o.width),
        "at most " + std::to_string(kMaxImagePixels) + " pixels");
  check(std::isfinite(o.scale), Errc::kInvalidArgument, subject, "scale is not finite");
  for (const auto* v : {&o.mean, &o.stddev}) {
    const char* name = v == &o.mean ? "mean" : "stddev";
    check(v->empty() || v->size() == 1 || static_cast<int64_t>(v->size()) == channels,
          Errc::kInvalidArgument, subject,
          "has " + std::to_string(v->size()) + " " + name + " values for " +
              std::to_string(channels) + " channels",
          "none, one, or one per channel");
    for (float x : *v)
      check(std::isfinite(x) && (v == &o.mean || x != 0.0f), Errc::kInvalidArgument, subject,
            std::string(name) + " value " + std::to_string(x),
            v == &o.mean ? "finite" : "finite and non-zero");
  }
}

namespace {

// Source coordinate for output index i of n, input size m: half-pixel
// centres, clamped at the edges (PyTorch's bilinear, align_corners=False).
struct Tap {
  int64_t i0, i1;
  float w1;  // weight of i1; i0 gets 1 - w1
};
std::vector<Tap> taps(int64_t out, int64_t in) {
  std::vector<Tap> t(static_cast<size_t>(out));
  const double ratio = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t i = 0; i < out; ++i) {
    double src = (static_cast<double>(i) + 0.5) * ratio - 0.5;
    if (src < 0) src = 0;
    auto i0 = static_cast<int64_t>(src);
    if (i0 > in - 1) i0 = in - 1;
    const int64_t i1 = std::min(i0 + 1, in - 1);
    t[static_cast<size_t>(i)] = {i0, i1, static_cast<float>(src - static_cast<double>(i0))};
  }
  return t;
}

}  // namespace

void image_to_float(const uint8_t* src, int64_t h, int64_t w, int64_t c, const ImageOptions& o,
                    float* out) {
  const int64_t oh = o.height > 0 ? o.height : h, ow = o.width > 0 ? o.width : w;
  const bool resize = oh != h || ow != w;
  std::vector<float> mean(static_cast<size_t>(c), 0.0f), sd(static_cast<size_t>(c), 1.0f);
  for (size_t k = 0; k < mean.size(); ++k) {
    if (!o.mean.empty()) mean[k] = o.mean[o.mean.size() == 1 ? 0 : k];
    if (!o.stddev.empty()) sd[k] = o.stddev[o.stddev.size() == 1 ? 0 : k];
  }
  const bool normalize = !o.mean.empty() || !o.stddev.empty();
  const std::vector<Tap> ty = resize ? taps(oh, h) : std::vector<Tap>{};
  const std::vector<Tap> tx = resize ? taps(ow, w) : std::vector<Tap>{};
  for (int64_t y = 0; y < oh; ++y) {
    for (int64_t x = 0; x < ow; ++x) {
      for (int64_t k = 0; k < c; ++k) {
        double px;
        if (resize) {
          const Tap& a = ty[static_cast<size_t>(y)];
          const Tap& b = tx[static_cast<size_t>(x)];
          auto at = [&](int64_t yy, int64_t xx) {
            return static_cast<float>(src[(yy * w + xx) * c + k]);
          };
          const float top = at(a.i0, b.i0) * (1 - b.w1) + at(a.i0, b.i1) * b.w1;
          const float bottom = at(a.i1, b.i0) * (1 - b.w1) + at(a.i1, b.i1) * b.w1;
          px = top * (1 - a.w1) + bottom * a.w1;
        } else {
          px = src[(y * w + x) * c + k];
        }
        float v = static_cast<float>(px * o.scale);
        if (normalize) v = (v - mean[static_cast<size_t>(k)]) / sd[static_cast<size_t>(k)];
        const int64_t at_out =
            o.layout == Layout::kNCHW ? (k * oh + y) * ow + x : (y * ow + x) * c + k;
        out[at_out] = v;
      }
    }
  }
}

}  // namespace data_detail

namespace {

namespace fs = std::filesystem;
using data_detail::file_subject;

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  static const char* kExts[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif",
                                ".tga", ".pgm", ".ppm",  ".pnm"};
  const std::string name = p.filename().string();
  if (name.empty() || name[0] == '.') return false;  // hidden files (.DS_Store, ._x.png)
  return std::any_of(std::begin(kExts), std::end(kExts), [&](const char* e) { return ext == e; });
}

// Image files under dir, recursively, sorted by path.
std::vector<std::string> list_images(const fs::path& dir, const std::string& subject) {
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  check(!ec, Errc::kIo, subject, "can't be listed: " + ec.message());
  for (; it != end; it.increment(ec)) {
    check(!ec, Errc::kIo, subject, "can't be listed: " + ec.message());
    std::error_code fec;
    if (it->is_regular_file(fec) && is_image_name(it->path())) files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown reason";
}

class ImageFolderDataset final : public Dataset {
 public:
  ImageFolderDataset(std::vector<std::string> files, std::vector<int64_t> labels, ImageOptions opts,
                     std::string desc, int64_t h, int64_t w)
      : files_(std::move(files)),
        labels_(std::move(labels)),
        opts_(std::move(opts)),
        desc_(std::move(desc)),
        h_(h),
        w_(w) {}

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }

  NamedTensors get(int64_t i) const override {
    data_detail::check_index(i, size(), desc_);
    const std::string& path = files_[static_cast<size_t>(i)];
    const std::string subj = file_subject(path);
    const int c = opts_.channels;
    int w = 0, h = 0, stored = 0;
    // stb_image (2.27, as Debian ships it) keeps its failure reason per
    // thread, so images may be decoded from several threads.
    if (stbi_info(path.c_str(), &w, &h, &stored) != 1)
      throw Error(Errc::kCorrupt, subj, "is not an image stb_image can read (" + stb_reason() + ")",
                  "a PNG, JPEG, BMP, GIF, TGA or PNM image");
    if (int64_t{w} * h > data_detail::kMaxImagePixels)
      throw Error(Errc::kUnsupported, subj,
                  "is " + std::to_string(w) + " x " + std::to_string(h) + " pixels",
                  "at most " + std::to_string(data_detail::kMaxImagePixels) + " pixels");
    std::unique_ptr<stbi_uc, void (*)(void*)> px(stbi_load(path.c_str(), &w, &h, &stored, c),
                                                 stbi_image_free);
    if (px == nullptr)
      throw Error(Errc::kCorrupt, subj, "can't be decoded (" + stb_reason() + ")",
                  "a valid image file");
    const bool resize = opts_.height > 0;
    if (!resize && (h != h_ || w != w_))
      throw Error(Errc::kShapeMismatch, subj,
                  "is " + std::to_string(w) + " x " + std::to_string(h) +
                      " pixels, the folder's first image is " + std::to_string(w_) + " x " +
                      std::to_string(h_),
                  "images of one size, or ImageOptions height and width to resize to");
    const int64_t oh = resize ? opts_.height : h, ow = resize ? opts_.width : w;
    Tensor img(DType::kF32, opts_.layout == Layout::kNCHW ? Shape{c, oh, ow} : Shape{oh, ow, c});
    data_detail::image_to_float(px.get(), h, w, c, opts_, img.data<float>());
    NamedTensors s;
    s.emplace_back("image", std::move(img));
    if (!labels_.empty())
      s.emplace_back("label", Tensor::from<int64_t>({}, {labels_[static_cast<size_t>(i)]}));
    return s;
  }

  std::string describe() const override { return desc_; }

 private:
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  ImageOptions opts_;
  std::string desc_;
  int64_t h_, w_;  // every image's size when not resizing
};

}  // namespace

std::shared_ptr<Dataset> open_image_folder(const std::string& dir, const ImageOptions& opts,
                                           std::vector<std::string>* class_names) {
  const std::string desc = "image folder '" + dir + "'";
  std::error_code ec;
  check(fs::exists(dir, ec), Errc::kNotFound, desc, "does not exist");
  check(fs::is_directory(dir, ec), Errc::kInvalidArgument, desc, "is not a folder");
  check(opts.channels == 1 || opts.channels == 3 || opts.channels == 4, Errc::kInvalidArgument,
        "image options for " + desc, "channels = " + std::to_string(opts.channels), "1, 3 or 4");
  data_detail::validate_image_options(opts, opts.channels, "image options for " + desc);

  std::vector<std::string> files;
  std::vector<int64_t> labels;
  std::vector<std::string> classes;
  if (opts.class_subfolders) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::error_code dec;
      if (e.is_directory(dec) && e.path().filename().string()[0] != '.')
        classes.push_back(e.path().filename().string());
      else if (e.is_regular_file(dec) && is_image_name(e.path()))
        throw Error(Errc::kInvalidArgument, file_subject(e.path().string()),
                    "is outside the class subfolders of " + desc,
                    "every image inside a class's subfolder");
    }
    check(!ec, Errc::kIo, desc, "can't be listed: " + ec.message());
    std::sort(classes.begin(), classes.end());
    for (size_t k = 0; k < classes.size(); ++k) {
      for (auto& f : list_images(fs::path(dir) / classes[k], desc)) {
        files.push_back(std::move(f));
        labels.push_back(static_cast<int64_t>(k));
      }
    }
  } else {
    files = list_images(dir, desc);
  }
  check(!files.empty(), Errc::kNotFound, desc,
        opts.class_subfolders ? "has no images in class subfolders" : "contains no images",
        "png, jpg, jpeg, bmp, gif, tga, pgm, ppm or pnm files");

  // Without resizing, every image must have the first one's size.
  int w = 0, h = 0, stored = 0;
  if (opts.height == 0) {
    if (stbi_info(files[0].c_str(), &w, &h, &stored) != 1)
      throw Error(Errc::kCorrupt, file_subject(files[0]),
                  "is not an image stb_image can read (" + stb_reason() + ")",
                  "a PNG, JPEG, BMP, GIF, TGA or PNM image");
  }
  if (class_names) *class_names = classes;
  return std::make_shared<ImageFolderDataset>(std::move(files), std::move(labels), opts, desc, h,
                                              w);
}

}  // namespace qforge
