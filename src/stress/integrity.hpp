// aico-stress: integrity check of what was sent against the gateway's store.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace aico::stress {

struct integrity_counts {
  uint64_t sent = 0;         ///< distinct ids the clients enqueued
  uint64_t stored = 0;       ///< distinct sent ids found in the store
  uint64_t lost = 0;         ///< sent, not stored
  uint64_t duplicated = 0;   ///< extra copies of an id in the store
  uint64_t out_of_order = 0; ///< stored before an id that was sent earlier
  uint64_t unexpected = 0;   ///< stored ids nobody sent (not an error)
  /// Sends whose outcome was unknown (the aico profile: the backend has no
  /// idempotency keys, docs/profiles.md): stored once or not at all are
  /// both correct, so they are not `lost` when missing; stored twice is
  /// `duplicated` like any other. Included in `sent`.
  uint64_t outcome_unknown = 0;
  uint64_t outcome_unknown_stored = 0; ///< of those, found in the store

  bool exact() const { return lost == 0 && duplicated == 0 && out_of_order == 0; }
  void merge(const integrity_counts& other);
};

struct integrity_result {
  integrity_counts total;
  /// Only conversations with a problem (lost, duplicated, out of order).
  std::map<std::string, integrity_counts> bad_conversations;
  uint64_t conversations = 0;
  void merge(const integrity_result& other);
};

/// `sent`: per conversation, the ids in the order they were sent.
/// `stored`: per conversation, the ids in the store's order (ascending seq).
/// Out of order counts stored sent-ids whose send position is below that of
/// an id stored before them.
/// `unknown`: sent ids whose outcome is unknown (see outcome_unknown).
integrity_counts check_conversation(const std::vector<std::string>& sent,
                                    const std::vector<std::string>& stored,
                                    const std::set<std::string>& unknown = {});

integrity_result
check_integrity(const std::map<std::string, std::vector<std::string>>& sent,
                const std::map<std::string, std::vector<std::string>>& stored,
                const std::set<std::string>& unknown = {});

} // namespace aico::stress
