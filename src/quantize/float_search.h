// The speed check's search (quantize.cpp, QuantConfig::speed_check) for a
// set of nodes to keep float: the nodes that lost time in int8, grouped by
// kind, are tried as wholes, since per node timing is not the whole story.
// A node left float moves a QuantizeLinear to its reader; a lone float node
// between integer ones adds a dequantize and a quantize, and a float region
// (attention's scores, Softmax and weighted sum) pays off only whole.
#pragma once

#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace qforge::quantize_detail {

// Cand has a member `std::set<std::string> floats`. kinds: the losing nodes
// by kind, the kind that lost the most time first. make(floats) ->
// std::optional<Cand> (nullopt where that model can't be made); time(a, b)
// -> std::pair<double, double>, the times of a and b measured side by side.
// Returns the fastest candidate found that is at least 2% faster than
// `base` (the model quantized throughout), or nullopt:
//  1. every losing node float;
//  2. unless that won, forward: from base, each kind added where that makes
//     the best so far 2% faster;
//  3. backward: from every losing node float, each kind taken out (the one
//     that lost least first) where that is no slower; the result where it
//     beats the best so far by 2%.
template <class Cand, class Make, class Time>
std::optional<Cand> search_float_set(const Cand& base,
                                     const std::vector<std::set<std::string>>& kinds, Make&& make,
                                     Time&& time) {
  std::set<std::string> all;
  for (const auto& k : kinds) all.insert(k.begin(), k.end());
  std::optional<Cand> best;
  auto consider = [&](std::optional<Cand> c) {
    if (!c) return;
    const auto [t_best, t_c] = time(best ? *best : base, *c);
    if (t_c < 0.98 * t_best) best = std::move(c);
  };
  const std::optional<Cand> all_float = make(all);
  if (!all_float) return std::nullopt;
  consider(all_float);
  if (kinds.size() < 2) return best;
  const bool all_won = best.has_value();
  for (size_t k = 0; !all_won && k < kinds.size(); ++k) {
    std::set<std::string> floats = best ? best->floats : std::set<std::string>{};
    floats.insert(kinds[k].begin(), kinds[k].end());
    consider(make(floats));
  }
  std::optional<Cand> cur = all_float;
  for (size_t k = kinds.size(); k-- > 0;) {
    std::set<std::string> floats = cur->floats;
    for (const std::string& n : kinds[k]) floats.erase(n);
    if (floats.empty()) continue;
    std::optional<Cand> c = make(floats);
    if (!c) continue;
    const auto [t_cur, t_c] = time(*cur, *c);
    if (t_c <= t_cur) cur = std::move(c);
  }
  if (cur->floats != all) consider(std::move(cur));
  return best;
}

}  // namespace qforge::quantize_detail
