#include "tools/skyreels/suggest.h"

#include <algorithm>
#include <cctype>

namespace sr::cli {
namespace {

char fold(char c) {
    return c == '_' ? '-' : char(std::tolower(static_cast<unsigned char>(c)));
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

bool folded_prefix(const std::string& p, const std::string& s) {
    if (p.size() > s.size()) return false;
    for (size_t i = 0; i < p.size(); ++i)
        if (fold(p[i]) != fold(s[i])) return false;
    return true;
}

}  // namespace

std::string closest_name(const std::string& typed, const std::vector<std::string>& candidates) {
    std::string best;
    size_t best_d = SIZE_MAX;
    const size_t stem = typed.size() - std::min<size_t>(typed.find_first_not_of('-'), typed.size());
    for (const std::string& c : candidates) {
        size_t d = edit_distance(typed, c);
        if (stem >= 3 && folded_prefix(typed, c)) d = std::min<size_t>(d, 1);
        if (d < best_d) best_d = d, best = c;
    }
    return best_d <= std::max<size_t>(1, stem / 3) ? best : "";
}

}  // namespace sr::cli
