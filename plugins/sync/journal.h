// File: journal.h
//
// The sync layer's staging journal: an append-only text file in the staging directory that
// records every dirty staged file and every pending removal before the call that made them
// returns. Each append is one write(2) followed by fdatasync(2), so a crash or kill -9 loses
// nothing that was appended; a torn last line (a crash mid-write) is ignored at replay.
//
// Records (one per line, fields separated by one space, strings percent-encoded after a '='):
//   S <seq> <id> <mode> <base_exists 0|1> =<base_version> =<path> [=<content>]
//                                        staged file data/<id> holds the content of path; with
//                                        the optional field (small files), the record itself
//                                        holds the content and data/<id> need not be durable
//   X <seq> =<path>                                                 path must be removed below
//   C <seq>                                                         record <seq> is retired
// A record is live until a C names its seq. Open() keeps only live records and rewrites the
// file with them (temp + rename + directory fsync), so the journal does not grow across mounts.
//
// Group commit: a durable Commit writes its lines under the mutex, then waits for one
// fdatasync that started after its write; concurrent commits share one fdatasync, and no
// caller's lock is held during it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs::sync {

struct JournalRecord {
  enum class Op : char { kStaged = 'S', kRemove = 'X' };
  Op op = Op::kStaged;
  uint64_t seq = 0;  // assigned by Journal::Append
  // kStaged only:
  uint64_t id = 0;  // the staging file's number (data/<id>)
  uint32_t mode = 0;
  bool base_exists = false;  // the path existed below when it was staged
  std::string base_version;  // its version below then (conflict detection)
  std::string path;
  // kStaged only: the file's bytes are in the record (small files).
  bool has_content = false;
  std::string content;
};

class Journal {
 public:
  // Opens (creating if needed) `dir`/journal, reads the live records and compacts the file.
  static Result<std::unique_ptr<Journal>> Open(const std::string& dir);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // The live records, by seq.
  std::vector<JournalRecord> Live() const;

  // Appends `add` (assigning their seqs, written back into the records) and retires `retire`,
  // in one write. `durable`: returns only after an fdatasync that covers it (group commit), so
  // all of it survives a power loss; otherwise it survives a crash of the process (the page
  // cache has it) and becomes durable with the next durable commit.
  Status Commit(std::vector<JournalRecord*> add, const std::vector<uint64_t>& retire,
                bool durable = true);

  // The content held by live record `seq` (has_content), or nullopt.
  std::optional<std::string> Content(uint64_t seq) const;

  // fdatasync calls made, for tests and counters.
  uint64_t syncs() const;

  // Rewrites the file with only the live records once enough retired ones accumulated.
  Status MaybeCompact();

  static std::string Encode(const std::string& s);
  static bool Decode(std::string_view in, std::string& out);

 private:
  explicit Journal(std::string dir) : dir_(std::move(dir)) {}
  Status Load();
  Status Rewrite();  // requires mu_

  const std::string dir_;
  // Guards everything below. A leaf lock: nothing else is taken while holding it.
  mutable std::mutex mu_;
  std::condition_variable synced_cv_;  // a group fdatasync finished
  int fd_ = -1;
  uint64_t writes_ = 0;   // appends written so far
  uint64_t synced_ = 0;   // appends covered by a finished fdatasync (or rewrite)
  bool syncing_ = false;  // a leader's fdatasync runs (without mu_); fd_ stays open
  uint64_t sync_calls_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t retired_since_rewrite_ = 0;
  std::map<uint64_t, JournalRecord> live_;
};

}  // namespace hfvfs::sync
