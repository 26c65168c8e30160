// QuantConfig: names of the enums, and the JSON form (nlohmann::json).
#include <fstream>
#include <set>
#include <sstream>

#include <cmath>

#include <nlohmann/json.hpp>

#include "qforge/error.h"
#include "qforge/quantize.h"

namespace qforge {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& subject, const std::string& key, const std::string& problem,
                      const std::string& expected = {}) {
  throw Error(Errc::kInvalidArgument, subject, "key '" + key + "' " + problem, expected);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

DType parse_int8_type(const std::string& s, const std::string& what) {
  const std::string l = lower(s);
  if (l == "u8" || l == "uint8" || l == "quint8") return DType::kU8;
  if (l == "s8" || l == "i8" || l == "int8" || l == "qint8") return DType::kI8;
  throw Error(Errc::kInvalidArgument, what, "is '" + s + "'", "u8 or s8");
}
const char* int8_type_name(DType t) { return t == DType::kU8 ? "u8" : "s8"; }

// Typed access to one key of a JSON object, with errors that name it.
struct Reader {
  const json& j;
  std::string subject, path;

  bool has(const char* k) const { return j.contains(k); }
  const json& at(const char* k, json::value_t want, const char* kind) const {
    const json& v = j.at(k);
    const bool ok = v.type() == want ||
                    (want == json::value_t::number_float && v.is_number()) ||
                    (want == json::value_t::number_integer && v.is_number_integer());
    if (!ok) bad(subject, path + k, "is " + std::string(v.type_name()), kind);
    return v;
  }
  std::string str(const char* k) const { return at(k, json::value_t::string, "a string").get<std::string>(); }
  bool boolean(const char* k) const { return at(k, json::value_t::boolean, "true or false").get<bool>(); }
  double number(const char* k) const { return at(k, json::value_t::number_float, "a number").get<double>(); }
  std::vector<std::string> strings(const char* k) const {
    const json& v = at(k, json::value_t::array, "an array of strings");
    std::vector<std::string> out;
    for (const json& e : v) {
      if (!e.is_string()) bad(subject, path + k, "holds " + std::string(e.type_name()), "strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  void only(const std::set<std::string>& keys) const {
    if (!j.is_object()) bad(subject, path.empty() ? "(top level)" : path, "is not an object", "a JSON object");
    for (auto it = j.begin(); it != j.end(); ++it)
      if (!keys.count(it.key())) {
        std::string list;
        for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
        bad(subject, path + it.key(), "is unknown", "one of: " + list);
      }
  }
};

QuantOverride read_override(const json& j, const std::string& subject, const std::string& path) {
  Reader r{j, subject, path};
  r.only({"mode", "activation_type", "weight_type", "per_channel", "method"});
  QuantOverride o;
  if (r.has("mode")) o.mode = parse_quant_mode(r.str("mode"), subject + ": " + path + "mode");
  if (r.has("activation_type"))
    o.activation_type = parse_int8_type(r.str("activation_type"), subject + ": " + path + "activation_type");
  if (r.has("weight_type"))
    o.weight_type = parse_int8_type(r.str("weight_type"), subject + ": " + path + "weight_type");
  if (r.has("per_channel")) o.per_channel = r.boolean("per_channel");
  if (r.has("method")) o.method = parse_calib_method(r.str("method"), subject + ": " + path + "method");
  return o;
}

json write_override(const QuantOverride& o) {
  json j = json::object();
  if (o.mode) j["mode"] = quant_mode_name(*o.mode);
  if (o.activation_type) j["activation_type"] = int8_type_name(*o.activation_type);
  if (o.weight_type) j["weight_type"] = int8_type_name(*o.weight_type);
  if (o.per_channel) j["per_channel"] = *o.per_channel;
  if (o.method) j["method"] = calib_method_name(*o.method);
  return j;
}

}  // namespace

const char* quant_mode_name(QuantMode m) {
  switch (m) {
    case QuantMode::kStatic: return "static";
    case QuantMode::kDynamic: return "dynamic";
    case QuantMode::kFloat: return "float";
  }
  return "?";
}
const char* quant_format_name(QuantFormat f) { return f == QuantFormat::kQdq ? "qdq" : "qop"; }
const char* quant_target_name(QuantTarget t) { return t == QuantTarget::kQforge ? "qforge" : "onnxruntime"; }
const char* calib_method_name(CalibMethod m) {
  switch (m) {
    case CalibMethod::kMinMax: return "minmax";
    case CalibMethod::kMovingAverage: return "avg";
    case CalibMethod::kEntropy: return "entropy";
    case CalibMethod::kPercentile: return "percentile";
    case CalibMethod::kMse: return "mse";
  }
  return "?";
}

QuantMode parse_quant_mode(const std::string& s, const std::string& what) {
  const std::string l = lower(s);
  if (l == "static") return QuantMode::kStatic;
  if (l == "dynamic") return QuantMode::kDynamic;
  if (l == "float" || l == "none" || l == "off") return QuantMode::kFloat;
  throw Error(Errc::kInvalidArgument, what, "is '" + s + "'", "static, dynamic or float");
}
QuantFormat parse_quant_format(const std::string& s, const std::string& what) {
  const std::string l = lower(s);
  if (l == "qdq") return QuantFormat::kQdq;
  if (l == "qop" || l == "qoperator") return QuantFormat::kQOperator;
  throw Error(Errc::kInvalidArgument, what, "is '" + s + "'", "qdq or qop");
}
QuantTarget parse_quant_target(const std::string& s, const std::string& what) {
  const std::string l = lower(s);
  if (l == "qforge") return QuantTarget::kQforge;
  if (l == "onnxruntime" || l == "ort") return QuantTarget::kOnnxRuntime;
  throw Error(Errc::kInvalidArgument, what, "is '" + s + "'", "qforge or onnxruntime");
}
CalibMethod parse_calib_method(const std::string& s, const std::string& what) {
  const std::string l = lower(s);
  if (l == "minmax") return CalibMethod::kMinMax;
  if (l == "avg" || l == "moving_average" || l == "movingaverage") return CalibMethod::kMovingAverage;
  if (l == "entropy" || l == "kl") return CalibMethod::kEntropy;
  if (l == "percentile") return CalibMethod::kPercentile;
  if (l == "mse" || l == "l2") return CalibMethod::kMse;
  throw Error(Errc::kInvalidArgument, what, "is '" + s + "'", "minmax, avg, entropy, percentile or mse");
}

QuantConfig QuantConfig::from_json(const std::string& text, const std::string& subject) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(Errc::kCorrupt, subject, std::string("is not valid JSON: ") + e.what());
  }
  Reader r{j, subject, ""};
  r.only({"mode", "format", "target", "activation_type", "weight_type", "per_channel",
          "symmetric_activations", "reduce_range", "calibration", "op_types", "exclude",
          "speed_check", "speed_check_batch",
          "op_type_overrides", "node_overrides"});
  QuantConfig c;
  if (r.has("mode")) c.mode = parse_quant_mode(r.str("mode"), subject + ": mode");
  if (r.has("format")) c.format = parse_quant_format(r.str("format"), subject + ": format");
  if (r.has("target")) c.target = parse_quant_target(r.str("target"), subject + ": target");
  if (r.has("activation_type"))
    c.activation_type = parse_int8_type(r.str("activation_type"), subject + ": activation_type");
  if (r.has("weight_type")) c.weight_type = parse_int8_type(r.str("weight_type"), subject + ": weight_type");
  if (r.has("per_channel")) c.per_channel = r.boolean("per_channel");
  if (r.has("symmetric_activations")) c.symmetric_activations = r.boolean("symmetric_activations");
  if (r.has("reduce_range")) c.reduce_range = r.boolean("reduce_range");
  if (r.has("speed_check")) c.speed_check = r.boolean("speed_check");
  if (r.has("speed_check_batch")) {
    const double b = r.number("speed_check_batch");
    if (b < 1 || b != std::floor(b)) bad(subject, "speed_check_batch", "must be a whole number of at least 1");
    c.speed_check_batch = static_cast<int64_t>(b);
  }
  if (r.has("calibration")) {
    Reader cr{j.at("calibration"), subject, "calibration."};
    cr.only({"method", "percentile", "averaging_constant", "bins"});
    if (cr.has("method")) c.method = parse_calib_method(cr.str("method"), subject + ": calibration.method");
    if (cr.has("percentile")) {
      c.percentile = cr.number("percentile");
      if (!(c.percentile > 0 && c.percentile <= 100))
        bad(subject, "calibration.percentile", "is " + std::to_string(c.percentile), "in (0, 100]");
    }
    if (cr.has("averaging_constant")) {
      c.averaging_constant = static_cast<float>(cr.number("averaging_constant"));
      if (!(c.averaging_constant > 0 && c.averaging_constant <= 1))
        bad(subject, "calibration.averaging_constant", "is " + std::to_string(c.averaging_constant),
            "in (0, 1]");
    }
    if (cr.has("bins")) {
      const double b = cr.number("bins");
      if (!(b >= 128 && b <= 65536 && b == static_cast<int>(b)))
        bad(subject, "calibration.bins", "is " + std::to_string(b), "an integer in [128, 65536]");
      c.histogram_bins = static_cast<int>(b);
    }
  }
  if (r.has("op_types")) c.op_types = r.strings("op_types");
  if (r.has("exclude")) c.exclude = r.strings("exclude");
  for (const char* key : {"op_type_overrides", "node_overrides"}) {
    if (!r.has(key)) continue;
    const json& m = j.at(key);
    if (!m.is_object()) bad(subject, key, "is " + std::string(m.type_name()), "an object");
    auto& dst = std::string(key) == "op_type_overrides" ? c.op_type_overrides : c.node_overrides;
    for (auto it = m.begin(); it != m.end(); ++it)
      dst[it.key()] = read_override(it.value(), subject, std::string(key) + "." + it.key() + ".");
  }
  return c;
}

QuantConfig QuantConfig::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(Errc::kIo, "config file '" + path + "'", "can't be opened");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str(), "config file '" + path + "'");
}

std::string QuantConfig::to_json() const {
  json j;
  j["mode"] = quant_mode_name(mode);
  j["format"] = quant_format_name(format);
  j["target"] = quant_target_name(target);
  j["activation_type"] = int8_type_name(activation_type);
  j["weight_type"] = int8_type_name(weight_type);
  j["per_channel"] = per_channel;
  j["symmetric_activations"] = symmetric_activations;
  j["reduce_range"] = reduce_range;
  j["speed_check"] = speed_check;
  j["speed_check_batch"] = speed_check_batch;
  j["calibration"] = {{"method", calib_method_name(method)},
                      {"percentile", percentile},
                      {"averaging_constant", averaging_constant},
                      {"bins", histogram_bins}};
  j["op_types"] = op_types;
  j["exclude"] = exclude;
  j["op_type_overrides"] = json::object();
  for (const auto& [k, o] : op_type_overrides) j["op_type_overrides"][k] = write_override(o);
  j["node_overrides"] = json::object();
  for (const auto& [k, o] : node_overrides) j["node_overrides"][k] = write_override(o);
  return j.dump(2);
}

}  // namespace qforge
