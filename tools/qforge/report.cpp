// `qforge report RESULTS.json... -o report.html`: the measurements of eval,
// bench and compare in one self-contained HTML page (inline CSS and SVG,
// nothing fetched), and the same data as Markdown (report.md) and JSON
// (report.json) beside it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "cli_util.h"
#include "commands.h"
#include "qforge/error.h"
#include "report.h"
#include "results.h"

namespace qforge::cli {
namespace {

using nlohmann::json;

std::string esc(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '<') r += "&lt;";
    else if (c == '>') r += "&gt;";
    else if (c == '&') r += "&amp;";
    else if (c == '"') r += "&quot;";
    else r += c;
  }
  return r;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string short_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

// One row of the summary: what is known of one model.
struct Row {
  std::string model;
  std::map<std::string, double> metric;  // metric name -> value
  double agreement = -1;
  int64_t file_bytes = -1;
  std::map<int64_t, json> bench;  // batch -> the bench entry
};

struct Data {
  std::vector<Row> rows;  // in the order the models first appear
  std::vector<std::string> metrics;
  std::map<std::string, bool> higher_better;
  std::vector<int64_t> batches;
  std::vector<json> compares, sensitivities;
  std::vector<std::string> eval_data;
  std::set<std::string> seen;  // entries already added, as JSON text
  json merged = json::array();  // every entry once, for report.json

  Row& row(const std::string& m) {
    for (Row& r : rows)
      if (r.model == m) return r;
    rows.push_back(Row{m});
    return rows.back();
  }
};

void add_result(Data& d, const json& j, const std::string& file) {
  if (j.is_array()) {
    for (const json& e : j) add_result(d, e, file);
    return;
  }
  // The same entry twice (a report.json given with the files it merged): once.
  if (!d.seen.insert(j.dump()).second) return;
  d.merged.push_back(j);
  check(j.is_object() && j.contains("kind"), Errc::kCorrupt, "results file '" + file + "'",
        "is not the JSON of qforge eval, bench or compare", "a file written with --json");
  const std::string kind = j.at("kind");
  if (kind == "eval") {
    const std::string m = j.at("metric");
    if (std::find(d.metrics.begin(), d.metrics.end(), m) == d.metrics.end()) d.metrics.push_back(m);
    d.higher_better[m] = j.value("higher_is_better", true);
    d.eval_data.push_back(m + " on " + j.at("data").get<std::string>() + ", " +
                          std::to_string(j.at("samples").get<int64_t>()) + " samples, against " +
                          j.at("reference").get<std::string>());
    for (const json& s : j.at("models")) {
      Row& r = d.row(s.at("model"));
      if (!s.at("value").is_null()) r.metric[m] = s.at("value");
      if (s.contains("agreement") && s.at("agreement").get<double>() >= 0) r.agreement = s.at("agreement");
    }
  } else if (kind == "bench") {
    const int64_t b = j.at("batch");
    if (std::find(d.batches.begin(), d.batches.end(), b) == d.batches.end()) d.batches.push_back(b);
    for (const json& s : j.at("models")) {
      Row& r = d.row(s.at("model"));
      r.file_bytes = s.at("file_bytes");
      r.bench[b] = s;
    }
  } else if (kind == "compare") {
    d.compares.push_back(j);
  } else if (kind == "sensitivity") {
    d.sensitivities.push_back(j);
  } else {
    throw Error(Errc::kCorrupt, "results file '" + file + "'", "has an unknown kind '" + kind + "'",
                "eval, bench, compare or sensitivity");
  }
}

// ------------------------------------------------------------------ charts

const char* kColors[] = {"#1f6fb4", "#e0661b", "#2a9d3a", "#c23b3b", "#7b4fb0", "#8c564b", "#d45fb0", "#6b6b6b"};

struct Point {
  double x, y;
  std::string label;
};

// A scatter plot: each model a coloured, labelled dot.
std::string scatter(const std::string& id, const std::string& title, const std::string& xlabel,
                    const std::string& ylabel, const std::vector<Point>& pts) {
  const double W = 520, H = 320, L = 70, R = 20, T = 36, B = 50;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (!pts.empty()) {
    x0 = x1 = pts[0].x, y0 = y1 = pts[0].y;
    for (const Point& p : pts) x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
  }
  x0 = std::min(0.0, x0);  // sizes and latencies from zero
  const double ypad = std::max((y1 - y0) * 0.15, std::max(std::fabs(y1) * 1e-3, 1e-9));
  y0 -= ypad, y1 += ypad;
  x1 += (x1 - x0) * 0.08 + 1e-9;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); };
  std::ostringstream s;
  s << "<svg id=\"" << id << "\" class=\"chart\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << ' '
    << H << "\" xmlns=\"http://www.w3.org/2000/svg\">\n";
  s << "<text x=\"" << W / 2 << "\" y=\"20\" text-anchor=\"middle\" class=\"title\">" << esc(title) << "</text>\n";
  s << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" class=\"axis\"/>\n";
  s << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" class=\"axis\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    s << "<text x=\"" << X(xv) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\" class=\"tick\">"
      << fmt("%.3g", xv) << "</text>\n";
    s << "<text x=\"" << L - 6 << "\" y=\"" << Y(yv) + 4 << "\" text-anchor=\"end\" class=\"tick\">" << fmt("%.4g", yv)
      << "</text>\n";
    s << "<line x1=\"" << L << "\" y1=\"" << Y(yv) << "\" x2=\"" << W - R << "\" y2=\"" << Y(yv) << "\" class=\"grid\"/>\n";
  }
  s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\" class=\"label\">"
    << esc(xlabel) << "</text>\n";
  s << "<text x=\"16\" y=\"" << (T + H - B) / 2 << "\" text-anchor=\"middle\" class=\"label\" transform=\"rotate(-90 16 "
    << (T + H - B) / 2 << ")\">" << esc(ylabel) << "</text>\n";
  for (size_t i = 0; i < pts.size(); ++i) {
    const char* c = kColors[i % (sizeof kColors / sizeof *kColors)];
    s << "<circle cx=\"" << X(pts[i].x) << "\" cy=\"" << Y(pts[i].y) << "\" r=\"7\" fill=\"" << c << "\"><title>"
      << esc(pts[i].label) << "</title></circle>\n";
    const bool left = X(pts[i].x) > W * 0.6;  // keep the label inside the chart
    s << "<text x=\"" << X(pts[i].x) + (left ? -10 : 10) << "\" y=\"" << Y(pts[i].y) - 8 << "\" text-anchor=\""
      << (left ? "end" : "start") << "\" class=\"point\">" << esc(pts[i].label) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

// Horizontal bars, one per item, from a zero line (negative values to its
// left); an infinite value (an exact match) fills the width.
std::string bars(const std::string& id, const std::string& title, const std::string& unit,
                 const std::vector<std::pair<std::string, double>>& items, const char* color) {
  const double W = 720, row = 22, L = 260, R = 90, T = 36;
  const double H = T + row * static_cast<double>(items.size()) + 16;
  double lo = 0, hi = 0;
  for (const auto& [n, v] : items)
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (hi - lo < 1e-12) hi = lo + 1;
  const double k = (W - L - R) / (hi - lo), zero = L - lo * k;
  std::ostringstream s;
  s << "<svg id=\"" << id << "\" class=\"chart\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << ' '
    << H << "\" xmlns=\"http://www.w3.org/2000/svg\">\n";
  s << "<text x=\"" << W / 2 << "\" y=\"20\" text-anchor=\"middle\" class=\"title\">" << esc(title) << "</text>\n";
  for (size_t i = 0; i < items.size(); ++i) {
    const double y = T + row * static_cast<double>(i);
    const double v = items[i].second;
    const double x = std::isfinite(v) ? zero + v * k : W - R;
    s << "<text x=\"" << L - 8 << "\" y=\"" << y + 15 << "\" text-anchor=\"end\" class=\"tick\">" << esc(items[i].first)
      << "</text>\n";
    s << "<rect x=\"" << std::min(zero, x) << "\" y=\"" << y + 3 << "\" width=\"" << std::max(1.0, std::fabs(x - zero))
      << "\" height=\"" << row - 6 << "\" fill=\"" << color << "\"/>\n";
    s << "<text x=\"" << std::max(zero, x) + 6 << "\" y=\"" << y + 15 << "\" class=\"tick\">"
      << (std::isfinite(v) ? fmt("%.2f", v) + " " + unit : std::string("exact")) << "</text>\n";
  }
  s << "<line x1=\"" << zero << "\" y1=\"" << T << "\" x2=\"" << zero << "\" y2=\"" << H - 12 << "\" class=\"axis\"/>\n";
  s << "</svg>\n";
  return s.str();
}

// --------------------------------------------------------------- documents

std::string metric_cell(const Row& r, const std::string& m) {
  auto it = r.metric.find(m);
  if (it == r.metric.end()) return "";
  return fmt(m == "top1" || m == "top5" ? "%.2f %%" : "%.5g", it->second);
}

std::string delta_cell(const Data& d, const Row& r, const std::string& m) {
  auto it = r.metric.find(m);
  auto base = d.rows[0].metric.find(m);
  if (&r == &d.rows[0] || it == r.metric.end() || base == d.rows[0].metric.end()) return "";
  return fmt("%+.3g", it->second - base->second);
}

std::string bench_cell(const Row& r, int64_t b, const char* key, const char* f) {
  auto it = r.bench.find(b);
  return it == r.bench.end() ? "" : fmt(f, it->second.at(key).get<double>());
}

std::string rss_cell(const Row& r) {
  for (const auto& [b, e] : r.bench) return human_bytes(e.at("rss_added_bytes").get<int64_t>());
  return "";
}

// The summary table's header and rows as cells.
std::vector<std::vector<std::string>> summary_table(const Data& d) {
  std::vector<std::string> head = {"model"};
  for (const auto& m : d.metrics) head.insert(head.end(), {m, "change"});
  if (!d.metrics.empty() && (d.metrics[0] == "top1" || d.metrics[0] == "top5")) head.push_back("agree top-1");
  head.push_back("file size");
  for (int64_t b : d.batches) {
    head.push_back("p50 ms (batch " + std::to_string(b) + ")");
    head.push_back("samples/s (batch " + std::to_string(b) + ")");
  }
  head.push_back("memory added");
  std::vector<std::vector<std::string>> t = {head};
  for (const Row& r : d.rows) {
    std::vector<std::string> c = {short_name(r.model)};
    for (const auto& m : d.metrics) c.insert(c.end(), {metric_cell(r, m), delta_cell(d, r, m)});
    if (!d.metrics.empty() && (d.metrics[0] == "top1" || d.metrics[0] == "top5"))
      c.push_back(r.agreement >= 0 ? fmt("%.2f %%", r.agreement) : "");
    c.push_back(r.file_bytes >= 0 ? human_bytes(r.file_bytes) : "");
    for (int64_t b : d.batches) {
      c.push_back(bench_cell(r, b, "p50_ms", "%.3f"));
      c.push_back(bench_cell(r, b, "samples_per_s", "%.1f"));
    }
    c.push_back(rss_cell(r));
    t.push_back(c);
  }
  return t;
}

std::vector<Point> metric_points(const Data& d, bool latency) {
  std::vector<Point> pts;
  if (d.metrics.empty()) return pts;
  const std::string& m = d.metrics[0];
  for (const Row& r : d.rows) {
    auto v = r.metric.find(m);
    if (v == r.metric.end()) continue;
    if (latency) {
      if (d.batches.empty() || !r.bench.count(d.batches[0])) continue;
      pts.push_back({r.bench.at(d.batches[0]).at("p50_ms").get<double>(), v->second, short_name(r.model)});
    } else if (r.file_bytes >= 0) {
      pts.push_back({static_cast<double>(r.file_bytes) / 1024.0, v->second, short_name(r.model)});
    }
  }
  return pts;
}

std::vector<std::pair<std::string, double>> sqnr_items(const json& c) {
  std::vector<std::pair<std::string, double>> items;
  for (const json& t : c.at("tensors"))
    items.emplace_back(t.at("tensor").get<std::string>() + " (" + t.at("op_type").get<std::string>() + ")",
                       t.at("sqnr_db").is_null() ? INFINITY : t.at("sqnr_db").get<double>());
  return items;
}

std::string html_table(const std::vector<std::vector<std::string>>& t, const std::string& id) {
  std::ostringstream s;
  s << "<table id=\"" << id << "\">\n<tr>";
  for (const auto& h : t[0]) s << "<th>" << esc(h) << "</th>";
  s << "</tr>\n";
  for (size_t i = 1; i < t.size(); ++i) {
    s << "<tr>";
    for (const auto& c : t[i]) s << "<td>" << esc(c) << "</td>";
    s << "</tr>\n";
  }
  s << "</table>\n";
  return s.str();
}

std::string md_table(const std::vector<std::vector<std::string>>& t) {
  std::ostringstream s;
  for (size_t i = 0; i < t.size(); ++i) {
    s << "|";
    for (const auto& c : t[i]) s << ' ' << c << " |";
    s << "\n";
    if (i == 0) {
      s << "|";
      for (size_t k = 0; k < t[0].size(); ++k) s << (k ? "---:|" : "---|");
      s << "\n";
    }
  }
  return s.str();
}

std::vector<std::vector<std::string>> compare_table(const json& c) {
  std::vector<std::vector<std::string>> t = {{"tensor", "node", "op", "SQNR dB", "cosine", "max abs error"}};
  for (const json& e : c.at("tensors"))
    t.push_back({e.at("tensor").get<std::string>() + (e.value("is_output", false) ? " (output)" : ""),
                 e.at("node").get<std::string>(), e.at("op_type").get<std::string>(),
                 e.at("sqnr_db").is_null() ? "exact" : fmt("%.2f", e.at("sqnr_db").get<double>()),
                 fmt("%.6f", e.at("cosine").get<double>()), fmt("%.4g", e.at("max_abs").get<double>())});
  return t;
}

std::vector<std::vector<std::string>> sensitivity_table(const json& s) {
  const std::string m = s.at("metric");
  std::vector<std::vector<std::string>> t = {{"node left float", "op", m, "gain"}};
  for (const json& l : s.at("layers"))
    t.push_back({l.at("node").get<std::string>(), l.at("op_type").get<std::string>(),
                 fmt("%.4g", l.at("value").get<double>()), fmt("%+.3g", l.at("gain").get<double>())});
  return t;
}

const char* kCss = R"(body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:4px 9px;text-align:right}
th{background:#f2f4f7}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9em}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #e3e3e3;background:#fff}
.title{font-weight:600;font-size:14px}.tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#333}.point{font-size:11px;fill:#222}
.axis{stroke:#333;stroke-width:1}.grid{stroke:#eee;stroke-width:1})";

}  // namespace

ReportFiles write_report(const std::vector<std::string>& inputs, const std::string& html_path) {
  check(!inputs.empty(), Errc::kInvalidArgument, "report", "needs at least one results file",
        "files written by qforge eval/bench/compare --json");
  Data d;
  for (const std::string& f : inputs) {
    std::ifstream in(f);
    check(static_cast<bool>(in), Errc::kNotFound, "results file '" + f + "'", "can't be opened");
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      throw Error(Errc::kCorrupt, "results file '" + f + "'", std::string("is not valid JSON: ") + e.what());
    }
    try {
      add_result(d, j, f);
    } catch (const json::exception& e) {
      throw Error(Errc::kCorrupt, "results file '" + f + "'", std::string("lacks a field: ") + e.what(),
                  "a file written with --json");
    }
  }
  check(!d.rows.empty() || !d.compares.empty() || !d.sensitivities.empty(), Errc::kInvalidArgument, "report",
        "has nothing to show", "eval, bench or compare results");

  const auto table = summary_table(d);
  const std::string metric = d.metrics.empty() ? "" : d.metrics[0];
  std::ostringstream h, md;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qforge report</title>\n<style>" << kCss
    << "</style></head>\n<body>\n<h1>qforge report</h1>\n";
  md << "# qforge report\n\n";
  if (!d.rows.empty()) {
    h << "<h2>Float and quantized models</h2>\n" << html_table(table, "summary");
    md << "## Float and quantized models\n\n" << md_table(table) << "\n";
    for (const auto& e : d.eval_data) {
      h << "<p class=\"note\">" << esc(e) << "</p>\n";
      md << "- " << e << "\n";
    }
    if (!d.batches.empty()) {
      const std::string note = "Latency: median (p50) of interleaved runs in one process; memory added: the rise of the "
                               "process's peak resident memory while that model alone was loaded and run.";
      h << "<p class=\"note\">" << note << "</p>\n";
      md << "- " << note << "\n";
    }
    md << "\n";
    h << "<div class=\"charts\">\n";
    const auto size_pts = metric_points(d, false), lat_pts = metric_points(d, true);
    if (!size_pts.empty())
      h << scatter("size-chart", metric + " vs model size", "file size (KiB)", metric, size_pts);
    if (!lat_pts.empty())
      h << scatter("latency-chart", metric + " vs latency (batch " + std::to_string(d.batches[0]) + ")",
                   "p50 latency (ms)", metric, lat_pts);
    h << "</div>\n";
  }
  for (size_t i = 0; i < d.compares.size(); ++i) {
    const json& c = d.compares[i];
    const std::string title = short_name(c.at("quant_model")) + " vs " + short_name(c.at("float_model"));
    h << "<h2>Per-layer error: " << esc(title) << "</h2>\n<p class=\"note\">" << c.at("samples").get<int64_t>()
      << " samples of " << esc(c.at("data")) << "; SQNR = 10 log10(sum x&sup2; / sum (x - q)&sup2;), worst first.</p>\n";
    h << bars("sqnr-chart" + (i ? std::to_string(i) : std::string()), "SQNR per tensor (dB, higher is better)", "dB",
              sqnr_items(c), "#1f6fb4");
    h << html_table(compare_table(c), "compare" + std::to_string(i));
    md << "## Per-layer error: " << title << "\n\n" << md_table(compare_table(c)) << "\n";
  }
  for (size_t i = 0; i < d.sensitivities.size(); ++i) {
    const json& s = d.sensitivities[i];
    std::vector<std::pair<std::string, double>> items;
    for (const json& l : s.at("layers")) items.emplace_back(l.at("node"), l.at("gain"));
    h << "<h2>Sensitivity: each layer left float in turn</h2>\n<p class=\"note\">" << esc(s.at("metric")) << ": float "
      << fmt("%.4g", s.at("float_value")) << ", fully quantized " << fmt("%.4g", s.at("quant_value"))
      << ". Gain: how much leaving that layer float recovers.</p>\n";
    h << bars("sensitivity-chart" + (i ? std::to_string(i) : std::string()), "gain from leaving the layer float",
              s.at("metric").get<std::string>(), items, "#e0661b");
    h << html_table(sensitivity_table(s), "sensitivity" + std::to_string(i));
    md << "## Sensitivity\n\n" << md_table(sensitivity_table(s)) << "\n";
  }
  h << "<p class=\"note\">Written by qforge " << QFORGE_VERSION << ".</p>\n</body></html>\n";

  ReportFiles out;
  const std::filesystem::path p(html_path);
  out.html = html_path;
  out.markdown = (p.parent_path() / (p.stem().string() + ".md")).string();
  out.json = (p.parent_path() / (p.stem().string() + ".json")).string();
  write_file_atomic(out.html, h.str());
  write_file_atomic(out.markdown, md.str());
  write_json(out.json, d.merged);
  return out;
}

Command add_report(CLI::App& app) {
  auto* sub = app.add_subcommand("report", "One offline HTML page (and .md, .json) from eval/bench/compare results");
  auto inputs = std::make_shared<std::vector<std::string>>();
  auto output = std::make_shared<std::string>("report.html");
  sub->add_option("results", *inputs, "JSON files written by qforge eval, bench or compare --json")->required();
  sub->add_option("-o,--output", *output, "the HTML file (default report.html); .md and .json go beside it");
  return {sub, [inputs, output] {
            const ReportFiles f = write_report(*inputs, *output);
            std::printf("wrote %s\n      %s\n      %s\n", f.html.c_str(), f.markdown.c_str(), f.json.c_str());
            return 0;
          }};
}

}  // namespace qforge::cli
