// Calibration data: readers for the formats calibration sets come in (IDX,
// NPY, NPZ, ONNX .pb tensor sets, folders of PNG / JPEG images), a seeded
// batch iterator over them, and CalibrationDataReader, the interface through
// which a quantizer pulls batches of named model inputs (as ONNX Runtime's
// CalibrationDataReader does).
//
//   CalibrationOptions o;
//   o.input_names = {"image"};
//   o.batch = {.batch_size = 32, .shuffle = true, .seed = 1, .limit = 512};
//   auto reader = open_calibration_data("t10k-images-idx3-ubyte.gz", o);
//   while (auto batch = reader->next()) session.run(*batch);  // image: f32[32, 1, 28, 28]
//
// Every reader throws qforge::Error naming the file on bad input. Nothing
// here holds a folder of images or a set of .pb files in memory at once:
// datasets load one sample when asked for it. IDX, NPY and NPZ files are
// loaded whole (their sizes are checked against the file before anything is
// allocated).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qforge/tensor.h"

namespace qforge {

// Tensors by name: one sample, one batch, the arrays of an .npz file. The
// same type as Session::NamedTensors, so a batch is a Session's input.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// ---------------------------------------------------------------- files

// An IDX file (the MNIST / Fashion-MNIST format), gzipped or not (told by the
// gzip magic, not the name). Element types 0x08 u8, 0x09 i8, 0x0B i16,
// 0x0C i32, 0x0D f32, 0x0E f64, big-endian in the file, native in the Tensor;
// the shape is the header's dimensions. Errors: truncated or over-long data,
// bad magic, unknown type, corrupt gzip stream (its CRC is checked).
Tensor read_idx(const std::string& path);

// An NPZ file (numpy.savez / savez_compressed): a zip archive of .npy files,
// stored or deflated, zip64 included. Arrays in archive order, each named by
// its entry without ".npy". CRCs are checked; entries that are not .npy,
// encrypted or otherwise compressed are errors naming the entry.
NamedTensors read_npz(const std::string& path);

// ---------------------------------------------------------------- datasets

// A sequence of samples, each a few named tensors ("image", "label").
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Sample i, 0 <= i < size(). Every sample has the same names in the same
  // order. Loads from disk where the dataset is on disk.
  virtual NamedTensors get(int64_t i) const = 0;
  // True where each sample's tensors already have a leading batch axis (ONNX
  // .pb sets: input_0.pb is f32[1, 3, 224, 224]); BatchMode::kAuto then
  // concatenates samples along axis 0 instead of stacking them.
  virtual bool samples_batched() const { return false; }
  // What the data are, for messages: "file 'x.npz'", "image folder 'imgs'".
  virtual std::string describe() const = 0;
};

// The rows of arrays that share their first dimension N: sample i holds row
// i of each array (a view, no copy), under the array's name.
std::shared_ptr<Dataset> tensor_dataset(NamedTensors arrays, std::string description);

enum class Layout { kNCHW, kNHWC };  // per sample: [C, H, W] or [H, W, C]

// How 8-bit images become float tensors: resized (bilinear), then per
// channel v = float(x * scale) (in double: for scale 1/255 exactly
// float32(x) / 255, as PyTorch's ToTensor), then y = (v - mean[c]) /
// stddev[c] in float (as torchvision's Normalize). The defaults are what
// scripts/make_models.py trained models/fashion_cnn.onnx on: x / 255.
struct ImageOptions {
  // Resize to height x width, bilinear with half-pixel centres (PyTorch's
  // interpolate(mode="bilinear", align_corners=False) without antialiasing),
  // computed in float. 0 x 0 keeps each image's size; then all images of a
  // folder must have the same size.
  int64_t height = 0, width = 0;
  int channels = 3;  // image folders: 1 grayscale, 3 RGB, 4 RGBA; IDX images are 1
  Layout layout = Layout::kNCHW;
  double scale = 1.0 / 255.0;
  std::vector<float> mean;    // one value per channel, or one for all; empty: 0
  std::vector<float> stddev;  // one value per channel, or one for all; empty: 1
  // Image folders: each subfolder is a class; the sorted subfolder names
  // give the label indices, and samples get an i64 scalar "label".
  bool class_subfolders = false;
};

// IDX images u8 [N, H, W] -> f32 [N, 1, H', W'] (kNCHW) or [N, H', W', 1]
// (kNHWC), converted as ImageOptions says (channels is ignored).
Tensor idx_images_to_float(const Tensor& images, const ImageOptions& opts = {});

// An IDX file as a dataset. u8 [N, H, W] files are images: sample "image"
// is f32 [1, H', W'] or [H', W', 1] (idx_images_to_float). Any other IDX
// file gives its rows unchanged, under "data". A non-empty labels_path (an
// IDX file of N labels) adds "label", an i64 scalar. Both files are loaded
// whole.
std::shared_ptr<Dataset> open_idx_dataset(const std::string& images_path,
                                          const std::string& labels_path = {},
                                          const ImageOptions& opts = {});

// ONNX tensor sets: `dir` holds input_0.pb ... input_{K-1}.pb (one sample),
// or test_data_set_* folders that each hold them (one sample per folder, in
// numeric order). Tensors are named by their TensorProto name, else
// "input_K"; samples_batched() is true.
std::shared_ptr<Dataset> open_pb_dataset(const std::string& dir);

// A folder of images (png, jpg/jpeg, bmp, gif, tga, pgm/ppm/pnm, decoded by
// stb_image; 8 bits per channel), found recursively and ordered by path.
// Sample "image" is f32 [C, H, W] or [H, W, C] (ImageOptions); with
// class_subfolders, also "label" (then an image outside the class
// subfolders is an error). Other files and hidden files are skipped; a
// folder with no images is an error. One image is decoded per get(); none
// is held.
// class_names, if given, receives the sorted class names.
std::shared_ptr<Dataset> open_image_folder(const std::string& dir, const ImageOptions& opts = {},
                                           std::vector<std::string>* class_names = nullptr);

// Picks the reader from the path:
//   *.npy                    rows of the array, named by the file's stem ("image.npy" -> "image")
//   *.npz                    rows of its arrays, by array name
//   *idx<D>-ubyte[.gz]       open_idx_dataset; for "*-images-idx3-ubyte[.gz]", the
//                            "*-labels-idx1-ubyte[.gz]" beside it, if present, gives "label"
//   folder with input_K.pb or test_data_set_*   open_pb_dataset
//   other folder             open_image_folder
std::shared_ptr<Dataset> open_dataset(const std::string& path, const ImageOptions& image = {});

// ---------------------------------------------------------------- batching

enum class BatchMode {
  kAuto,    // kConcat when the dataset's samples_batched(), else kStack
  kStack,   // a new leading axis: B samples of [d...] -> [B, d...]; all shapes equal
  kConcat,  // along axis 0: [n_i, d...] -> [sum n_i, d...]; trailing dims equal
};

struct BatchOptions {
  int64_t batch_size = 1;
  // Visit the samples in a shuffled order: a Fisher-Yates shuffle driven by
  // std::mt19937_64(seed), the same order for the same seed and size on
  // every platform.
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;  // drop a last batch smaller than batch_size
  // Use at most this many samples (0: all): the first `limit` of the
  // visiting order, so with shuffle a seeded random subset.
  int64_t limit = 0;
  BatchMode mode = BatchMode::kAuto;
};

// Yields batches of a dataset: each tensor of B samples stacked or
// concatenated (BatchMode), under the samples' names. Samples whose names,
// dtypes or shapes disagree are an Error naming the dataset and the sample.
class Batcher {
 public:
  Batcher(std::shared_ptr<const Dataset> data, BatchOptions opts);
  std::optional<NamedTensors> next();  // nullopt after the last batch
  void rewind() { pos_ = 0; }          // start again, same order
  int64_t num_batches() const;
  // The sample indices in visiting order (shuffled and limited).
  const std::vector<int64_t>& order() const { return order_; }

 private:
  std::shared_ptr<const Dataset> data_;
  BatchOptions opts_;
  std::vector<int64_t> order_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------- calibration

// Where a quantizer gets its calibration batches: implement this to feed
// your own data. Each call to next() returns one batch of model inputs by
// input name, or nullopt when there are no more.
class CalibrationDataReader {
 public:
  virtual ~CalibrationDataReader() = default;
  virtual std::optional<NamedTensors> next() = 0;
  // Starts again from the first batch, for calibration methods that make
  // more than one pass. The default throws Error(kUnsupported).
  virtual void rewind();
  // How many batches a pass yields, or -1 if unknown (for progress bars).
  virtual int64_t num_batches() const { return -1; }
};

// Model input name <- dataset tensor name. Empty: every tensor, as named.
using InputMap = std::vector<std::pair<std::string, std::string>>;

// A dataset read through a Batcher, each batch renamed by `inputs`.
std::unique_ptr<CalibrationDataReader> make_calibration_reader(std::shared_ptr<const Dataset> data,
                                                               BatchOptions batch,
                                                               InputMap inputs = {});

struct CalibrationOptions {
  // The model's inputs. Data tensors go to them by name when every input
  // has a tensor of its name; otherwise by position when the counts agree
  // and the order means something (one tensor for one input; input_K.pb is
  // the K-th input). A tensor named "label" is never an input unless an
  // input has that name. Empty: the data's tensors as named, less "label".
  std::vector<std::string> input_names;
  BatchOptions batch;
  ImageOptions image;  // for image folders and IDX images
};

// Which data tensor feeds which model input, by the rules of
// CalibrationOptions::input_names above; an Error naming the data when they
// can't be matched or the data hold no samples.
InputMap map_inputs(const Dataset& data, const std::vector<std::string>& input_names);

// open_dataset(path) with its tensors mapped onto the model's inputs.
std::unique_ptr<CalibrationDataReader> open_calibration_data(const std::string& path,
                                                             const CalibrationOptions& opts = {});

}  // namespace qforge
