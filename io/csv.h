// csv.h: reading and writing the CSV tables the tools exchange (labels,
// metadata, splits, predictions). RFC 4180: comma-separated, fields with a
// comma, quote or newline are quoted, quotes doubled. The reader reports the
// file and line of anything malformed.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace ich {

struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> line_of;  // 1-based line number of each row in the file
  // Index of a header column; throws naming the file when absent.
  size_t column(const std::string& name) const;
  bool has_column(const std::string& name) const;
};

// Reads a CSV with a header line; every row must have the header's number of
// fields (error names the file and line). A UTF-8 BOM and CRLF are accepted.
CsvTable read_csv(const std::string& path);
CsvTable parse_csv(const std::string& text, const std::string& name);

std::string csv_field(const std::string& s);  // quoted if needed
std::string csv_line(const std::vector<std::string>& fields);  // with "\n"

// Collects rows and writes them atomically (temporary file, then rename).
class CsvWriter {
 public:
  CsvWriter(std::string path, std::vector<std::string> header);
  void row(const std::vector<std::string>& fields);
  void commit();

 private:
  std::string path_, text_;
  size_t columns_;
};

std::string fmt_double(double v, int precision = 6);  // shortest round-trip-ish text

}  // namespace ich
