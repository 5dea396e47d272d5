#include "src/stress/integrity.hpp"

#include <unordered_map>
#include <unordered_set>

namespace aico::stress {

void integrity_counts::merge(const integrity_counts& o) {
  sent += o.sent;
  stored += o.stored;
  lost += o.lost;
  duplicated += o.duplicated;
  out_of_order += o.out_of_order;
  unexpected += o.unexpected;
  outcome_unknown += o.outcome_unknown;
  outcome_unknown_stored += o.outcome_unknown_stored;
}

void integrity_result::merge(const integrity_result& o) {
  total.merge(o.total);
  for (auto& [k, v] : o.bad_conversations)
    bad_conversations[k].merge(v);
  conversations += o.conversations;
}

integrity_counts check_conversation(const std::vector<std::string>& sent,
                                    const std::vector<std::string>& stored,
                                    const std::set<std::string>& unknown) {
  integrity_counts r;
  std::unordered_map<std::string, size_t> pos; // first send position
  for (size_t i = 0; i < sent.size(); ++i)
    if (pos.emplace(sent[i], i).second && unknown.count(sent[i]) > 0)
      ++r.outcome_unknown;
  r.sent = pos.size();
  std::unordered_set<std::string> seen;
  bool any = false;
  size_t highest = 0;
  for (auto& id : stored) {
    if (!seen.insert(id).second) {
      ++r.duplicated;
      continue;
    }
    auto i = pos.find(id);
    if (i == pos.end()) {
      ++r.unexpected;
      continue;
    }
    ++r.stored;
    if (unknown.count(id) > 0)
      ++r.outcome_unknown_stored;
    if (any && i->second < highest)
      ++r.out_of_order;
    if (!any || i->second > highest)
      highest = i->second;
    any = true;
  }
  // an unknown outcome that was not stored is not lost
  r.lost = r.sent - r.stored - (r.outcome_unknown - r.outcome_unknown_stored);
  return r;
}

integrity_result
check_integrity(const std::map<std::string, std::vector<std::string>>& sent,
                const std::map<std::string, std::vector<std::string>>& stored,
                const std::set<std::string>& unknown) {
  integrity_result res;
  static const std::vector<std::string> none;
  auto add = [&](const std::string& conv) {
    auto s = sent.find(conv);
    auto t = stored.find(conv);
    auto c = check_conversation(s == sent.end() ? none : s->second,
                                t == stored.end() ? none : t->second,
                                unknown);
    ++res.conversations;
    res.total.merge(c);
    if (!c.exact())
      res.bad_conversations[conv] = c;
  };
  for (auto& kv : sent)
    add(kv.first);
  for (auto& kv : stored)
    if (sent.count(kv.first) == 0)
      add(kv.first);
  return res;
}

} // namespace aico::stress
