#include "io/csv.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "engine/error.h"
#include "io/atomic_file.h"

namespace ich {

size_t CsvTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  throw Error("CSV " + path + ": no column '" + name + "' in the header");
}

bool CsvTable::has_column(const std::string& name) const {
  for (const auto& h : header)
    if (h == name) return true;
  return false;
}

CsvTable parse_csv(const std::string& text, const std::string& name) {
  CsvTable t;
  t.path = name;
  size_t i = 0;
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;
  int64_t line = 1;
  std::vector<std::string> fields;
  std::string field;
  bool any = false;
  int64_t row_line = 1;
  auto end_row = [&] {
    fields.push_back(field);
    field.clear();
    const bool blank = fields.size() == 1 && fields[0].empty();
    if (!blank) {
      if (t.header.empty()) {
        t.header = fields;
      } else {
        ICH_CHECK(fields.size() == t.header.size(), "CSV ", name, " line ", row_line, ": ", fields.size(),
                  " fields, the header has ", t.header.size());
        t.rows.push_back(fields);
        t.line_of.push_back(row_line);
      }
    }
    fields.clear();
    any = false;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (!any) row_line = line;
    any = true;
    if (c == '"' && field.empty()) {
      // quoted field
      ++i;
      while (true) {
        ICH_CHECK(i < text.size(), "CSV ", name, " line ", row_line, ": unterminated quoted field");
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field += text[i++];
      }
      ICH_CHECK(i >= text.size() || text[i] == ',' || text[i] == '\n' || text[i] == '\r', "CSV ", name, " line ",
                row_line, ": text after a closing quote");
      continue;
    }
    if (c == ',') {
      fields.push_back(field);
      field.clear();
    } else if (c == '\n') {
      end_row();
      ++line;
    } else if (c == '\r') {
      // part of CRLF: ignored
    } else {
      field += c;
    }
    ++i;
  }
  if (any) end_row();
  ICH_CHECK(!t.header.empty(), "CSV ", name, ": empty file (no header)");
  return t;
}

CsvTable read_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ICH_CHECK(in, "CSV ", path, ": cannot open (", std::strerror(errno), ")");
  const std::string text{std::istreambuf_iterator<char>(in), {}};
  return parse_csv(text, path);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

std::string csv_line(const std::vector<std::string>& f) {
  std::string s;
  for (size_t i = 0; i < f.size(); ++i) s += (i ? "," : "") + csv_field(f[i]);
  return s + "\n";
}

CsvWriter::CsvWriter(std::string path, std::vector<std::string> header)
    : path_(std::move(path)), text_(csv_line(header)), columns_(header.size()) {}

void CsvWriter::row(const std::vector<std::string>& fields) {
  ICH_CHECK(fields.size() == columns_, "CSV ", path_, ": row of ", fields.size(), " fields for ", columns_, " columns");
  text_ += csv_line(fields);
}

void CsvWriter::commit() { write_file_atomic(path_, text_); }

std::string fmt_double(double v, int precision) {
  if (std::isnan(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

}  // namespace ich
