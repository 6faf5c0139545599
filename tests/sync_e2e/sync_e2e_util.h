// File: sync_e2e_util.h
//
// Helpers shared by the sync end-to-end tests: file helpers, polling waits, and the seeded
// model test driven through a mounted folder with ordinary syscalls (no mmap).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace hfvfs::testing {

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "<missing>";
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

inline bool PwriteAll(int fd, const std::string& data, off_t off) {
  return pwrite(fd, data.data(), data.size(), off) == static_cast<ssize_t>(data.size());
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// Runs `ops` random operations (write at random offsets, truncate, read through the handle,
// close, fsync, rename, unlink, read through a fresh open) on `names` under `dir`, seeded by
// `seed`, and checks every read against an in-memory model. Returns the model at the end (all
// descriptors closed); failures are reported through gtest.
inline std::map<std::string, std::string> RunModel(const std::string& dir, uint32_t seed, int ops,
                                                   const std::vector<std::string>& names) {
  std::mt19937 rng(seed);
  auto rnd = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  std::map<std::string, std::string> model;
  std::map<std::string, int> fds;
  auto at = [&](const std::string& name) { return dir + "/" + name; };
  for (int op = 0; op < ops && !::testing::Test::HasFatalFailure(); ++op) {
    const std::string& name = names[rnd(static_cast<int>(names.size()))];
    int kind = rnd(10);
    if (!fds.count(name) && kind < 7) {
      int fd = open(at(name).c_str(), O_RDWR | O_CREAT, 0644);
      if (fd < 0) {
        ADD_FAILURE() << "op " << op << ": open " << name << ": " << strerror(errno);
        break;
      }
      fds[name] = fd;
      model.emplace(name, "");
    }
    int fd = fds.count(name) ? fds[name] : -1;
    switch (kind) {
      case 0:
      case 1:
      case 2: {
        size_t off = rnd(20000), len = 1 + rnd(3000);
        std::string data(len, static_cast<char>('a' + rnd(26)));
        EXPECT_TRUE(PwriteAll(fd, data, static_cast<off_t>(off))) << op;
        std::string& m = model[name];
        if (m.size() < off + len) m.resize(off + len, '\0');
        m.replace(off, len, data);
        break;
      }
      case 3: {
        size_t size = rnd(22000);
        EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0) << op;
        model[name].resize(size, '\0');
        break;
      }
      case 4: {
        std::string got(model[name].size() + 100, '\0');
        ssize_t n = pread(fd, got.data(), got.size(), 0);
        got.resize(n < 0 ? 0 : static_cast<size_t>(n));
        EXPECT_TRUE(got == model[name]) << "op " << op << ": read of " << name << " differs";
        break;
      }
      case 5:
        EXPECT_EQ(close(fd), 0) << op;
        fds.erase(name);
        break;
      case 6:
        if (rnd(8) == 0) {
          EXPECT_EQ(fsync(fd), 0) << op;
        }
        break;
      case 7: {
        if (!model.count(name)) break;
        const std::string& to = names[rnd(static_cast<int>(names.size()))];
        if (to == name || fds.count(to)) break;
        EXPECT_EQ(rename(at(name).c_str(), at(to).c_str()), 0) << op << strerror(errno);
        model[to] = model[name];
        model.erase(name);
        if (fds.count(name)) {
          fds[to] = fds[name];
          fds.erase(name);
        }
        break;
      }
      case 8:
        if (model.count(name) && !fds.count(name)) {
          EXPECT_EQ(unlink(at(name).c_str()), 0) << op << strerror(errno);
          model.erase(name);
        }
        break;
      case 9:
        if (model.count(name) && !fds.count(name)) {
          EXPECT_TRUE(Slurp(at(name)) == model[name])
              << "op " << op << ": fresh read of " << name << " differs";
        }
        break;
    }
  }
  for (auto& [n, fd] : fds) EXPECT_EQ(close(fd), 0);
  return model;
}

}  // namespace hfvfs::testing
