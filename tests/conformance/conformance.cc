// The layer conformance suite (see conformance.h for how a stack joins it).
#include "conformance.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>

#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "hfvfs/config.h"
#include "hfvfs/path.h"
#include "hfvfs/plugin.h"

namespace hfvfs::conformance {

namespace fs = std::filesystem;

// ---- names, seed tree, backing ----

const char* FeatureName(Feature feature) {
  switch (feature) {
    case Feature::kWrite:
      return "write";
    case Feature::kRandomWrite:
      return "random_write";
    case Feature::kRename:
      return "rename";
    case Feature::kRenameDirs:
      return "rename_dirs";
    case Feature::kAtomicRename:
      return "atomic_rename";
    case Feature::kSymlinks:
      return "symlinks";
    case Feature::kSetMode:
      return "set_mode";
    case Feature::kSetMtime:
      return "set_mtime";
    case Feature::kOverwrite:
      return "overwrite";
    case Feature::kStatfs:
      return "statfs";
    case Feature::kReadAfterRemove:
      return "read_after_remove";
    case Feature::kSeeBackingChanges:
      return "see_backing_changes";
    case Feature::kEmptyFiles:
      return "empty_files";
  }
  return "?";
}

std::string PatternBytes(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    // A byte that depends on its offset (not periodic at any power of two), so a read from the
    // wrong place never matches.
    uint64_t x = (static_cast<uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t{seed} << 32);
    out[i] = static_cast<char>((x >> 29) ^ (x >> 47));
  }
  return out;
}

SeedTree::SeedTree(const std::set<Feature>& cannot, size_t many_files) {
  auto file = [&](std::string path, std::string content) {
    entries_.push_back({std::move(path), FileType::kFile, std::move(content)});
  };
  auto dir = [&](std::string path) {
    entries_.push_back({std::move(path), FileType::kDirectory, ""});
  };
  file(kHello, "hello, world\n");
  if (cannot.count(Feature::kEmptyFiles) == 0) file(kEmpty, "");
  file(kBig, PatternBytes(3 * 1024 * 1024 + 12345, 1));
  file("name with spaces.txt", "spaces\n");
  file("\xC3\xBCn\xC3\xAF\x63\xC3\xB6\x64\xC3\xA9 \xE2\x80\x93 na\xC3\xAFve.txt", "unicode\n");
  dir(kDir);
  file("dir/a.txt", "alpha\n");
  dir("dir/sub");
  file(kNested, PatternBytes(70001, 2));
  dir(kEmptyDir);
  dir(kMany);
  for (size_t i = 0; i < many_files; ++i) {
    char name[32];
    snprintf(name, sizeof(name), "many/f%05zu.txt", i);
    file(name, "file " + std::to_string(i) + "\n");
  }
  if (cannot.count(Feature::kSymlinks) == 0) {
    entries_.push_back({kLink, FileType::kSymlink, kHello});
  }
}

const SeedEntry* SeedTree::find(std::string_view path) const {
  for (const SeedEntry& e : entries_) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

std::vector<std::string> SeedTree::children(std::string_view dir) const {
  std::vector<std::string> names;
  for (const SeedEntry& e : entries_) {
    if (ParentPath(e.path) == dir) names.emplace_back(BaseName(e.path));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status SeedTree::WriteToDir(const std::string& dir) const {
  return CatchAll("seed tree", [&]() -> Status {
    for (const SeedEntry& e : entries_) {
      fs::path target = fs::path(dir) / e.path;
      switch (e.type) {
        case FileType::kDirectory:
          fs::create_directories(target);
          break;
        case FileType::kSymlink:
          fs::create_symlink(e.content, target);
          break;
        case FileType::kFile: {
          std::ofstream out(target, std::ios::binary | std::ios::trunc);
          out.write(e.content.data(), static_cast<std::streamsize>(e.content.size()));
          if (!out) return Err(EIO, "cannot write " + target.string());
          break;
        }
      }
    }
    return Ok();
  });
}

Status SeedTree::WriteThrough(Layer& layer) const {
  for (const SeedEntry& e : entries_) {
    switch (e.type) {
      case FileType::kDirectory:
        HFVFS_RETURN_IF_ERROR(layer.mkdir(e.path, 0755));
        break;
      case FileType::kSymlink:
        HFVFS_RETURN_IF_ERROR(layer.symlink(e.content, e.path));
        break;
      case FileType::kFile: {
        HFVFS_ASSIGN_OR_RETURN(auto file, layer.create(e.path, 0644, O_WRONLY | O_CREAT | O_EXCL));
        const auto* bytes = reinterpret_cast<const std::byte*>(e.content.data());
        for (size_t off = 0; off < e.content.size(); off += 1 << 20) {
          size_t n = std::min<size_t>(1 << 20, e.content.size() - off);
          HFVFS_RETURN_IF_ERROR(file->write(off, std::span(bytes + off, n)));
        }
        HFVFS_RETURN_IF_ERROR(file->flush());
        HFVFS_RETURN_IF_ERROR(file->close());
        break;
      }
    }
  }
  return Ok();
}

Backing DirBacking(const std::string& dir) {
  Backing backing;
  backing.read = [dir](std::string_view path) -> Result<std::string> {
    std::ifstream in(fs::path(dir) / std::string(path), std::ios::binary);
    if (!in) return Err(ENOENT, "backing: cannot read " + std::string(path));
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  backing.write = [dir](std::string_view path, std::string_view content) -> Status {
    return CatchAll("backing write", [&]() -> Status {
      fs::path target = fs::path(dir) / std::string(path);
      fs::create_directories(target.parent_path());
      // Through a temporary and a rename, like most tools that change files in place.
      fs::path tmp = target;
      tmp += ".conformance-tmp";
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        if (!out) return Err(EIO, "backing: cannot write " + tmp.string());
      }
      fs::rename(tmp, target);
      return Ok();
    });
  };
  return backing;
}

std::string ConformanceName(const ::testing::TestParamInfo<StackConfig>& info) {
  return info.param.name;
}

void PrintTo(const StackConfig& config, std::ostream* os) {
  *os << config.name << " (cannot:";
  for (Feature f : config.cannot) *os << " " << FeatureName(f);
  *os << ")";
}

namespace {

// The services a layer may ask of the kernel, answered by nobody: tests have no mount.
class TestHost final : public Host {
 public:
  void invalidate(std::string_view, Invalidation) override {}
  std::string_view mount_id() const override { return "conformance"; }
  bool shutting_down() const override { return false; }
};

}  // namespace

Result<std::shared_ptr<Layer>> LoadPluginLayer(const std::string& plugin_file,
                                               std::string_view options_toml,
                                               std::shared_ptr<Layer> lower) {
  return CatchAll("load " + plugin_file, [&]() -> Result<std::shared_ptr<Layer>> {
    boost::dll::shared_library library(
        plugin_file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    if (!library.has("hfvfs_plugin")) {
      return Err(EINVAL, plugin_file + ": no hfvfs_plugin symbol (declare HFVFS_PLUGIN(...))");
    }
    const PluginDescriptor* d = library.get_alias<DescriptorFn>("hfvfs_plugin")();
    if (d->abi_major != kAbiMajor || std::strcmp(d->build_tag, HFVFS_BUILD_TAG) != 0) {
      return Err(EINVAL, plugin_file + ": built for ABI " + std::to_string(d->abi_major) + " as '" +
                             d->build_tag + "', this test is ABI " + std::to_string(kAbiMajor) +
                             " as '" HFVFS_BUILD_TAG "'");
    }
    // Pin it: layers and files it creates must never outlive their code.
    if (dlopen(plugin_file.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) == nullptr) {
      return Err(EIO, plugin_file + ": cannot pin the library: " + dlerror());
    }
    HFVFS_ASSIGN_OR_RETURN(auto config, ConfigView::FromToml(options_toml, plugin_file));
    config->set_label(std::string("layer (") + d->name + ")");
    static TestHost host;  // stateless; must outlive every layer
    LayerArgs args{*config, std::move(lower), host, 0, ""};
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<Layer> layer, d->create(args));
    HFVFS_RETURN_IF_ERROR(config->check_unused());
    return std::shared_ptr<Layer>(std::move(layer));
  });
}

TempDir::TempDir() {
  const char* tmp = getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/hfvfs-conformance-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

// ---- fixture ----

void LayerConformance::SetUp() {
  seed_ = std::make_unique<SeedTree>(GetParam().cannot, GetParam().many_files);
  ASSERT_TRUE(GetParam().make) << GetParam().name << ": StackConfig::make is not set";
  Result<StackUnderTest> made = GetParam().make(*seed_);
  ASSERT_TRUE(made.ok()) << GetParam().name << ": the factory failed: " << made.error().message();
  stack_ = std::move(*made);
  ASSERT_NE(stack_.top, nullptr) << GetParam().name << ": the factory returned no top layer";
}

Status LayerConformance::ShutdownNow() {
  shut_down_ = true;
  return stack_.top->shutdown(std::chrono::steady_clock::now() + std::chrono::seconds(30));
}

void LayerConformance::TearDown() {
  if (stack_.top && !shut_down_) {
    Status s = ShutdownNow();
    EXPECT_TRUE(s.ok()) << "shutdown: " << s.error().message();
  }
  stack_.top.reset();
  stack_.keep_alive.reset();
}

// ---- helpers ----

namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;

template <typename T>
::testing::AssertionResult IsOk(const Result<T>& r) {
  if (r.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "error " << r.code() << " (" << std::strerror(r.code()) << "): " << r.error().message();
}

template <typename T>
::testing::AssertionResult HasCode(const Result<T>& r, int code) {
  if (!r.ok()) {
    if (r.code() == code) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "expected " << std::strerror(code) << ", got "
                                         << std::strerror(r.code()) << ": " << r.error().message();
  }
  return ::testing::AssertionFailure() << "expected " << std::strerror(code) << ", got success";
}

// An unclaimed write must be refused as such, not fail with some other error.
::testing::AssertionResult IsRefusal(int code, bool allow_exdev = false) {
  if (code == EROFS || code == EOPNOTSUPP || (allow_exdev && code == EXDEV)) {
    return ::testing::AssertionSuccess();
  }
  if (code == 0) return ::testing::AssertionFailure() << "expected a refusal, got success";
  return ::testing::AssertionFailure()
         << "expected EROFS or EOPNOTSUPP, got " << std::strerror(code);
}

std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

Result<std::string> ReadOpen(File& file, size_t chunk) {
  std::string out;
  std::vector<std::byte> buf(chunk);
  uint64_t offset = 0;
  for (;;) {
    HFVFS_ASSIGN_OR_RETURN(size_t n, file.read(offset, buf));
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(buf.data()), n);
    offset += n;
    if (n < chunk) {
      // A short read is EOF: the next read must say 0.
      HFVFS_ASSIGN_OR_RETURN(size_t more, file.read(offset, buf));
      if (more != 0) return Err(EIO, "short read mid-file at offset " + std::to_string(offset - n));
      break;
    }
  }
  return out;
}

Result<std::string> ReadAll(Layer& layer, std::string_view path, size_t chunk = kMiB) {
  HFVFS_ASSIGN_OR_RETURN(auto file, layer.open(path, O_RDONLY));
  Result<std::string> content = ReadOpen(*file, chunk);
  Status closed = file->close();
  if (!content) return content;
  if (!closed) return closed.error();
  return content;
}

Status WriteNew(Layer& layer, std::string_view path, std::string_view content,
                size_t chunk = kMiB) {
  HFVFS_ASSIGN_OR_RETURN(auto file, layer.create(path, 0644, O_WRONLY | O_CREAT | O_EXCL));
  for (size_t off = 0; off < content.size(); off += chunk) {
    size_t n = std::min(chunk, content.size() - off);
    HFVFS_ASSIGN_OR_RETURN(size_t put, file->write(off, Bytes(content.substr(off, n))));
    if (put != n)
      return Err(EIO, "write returned " + std::to_string(put) + " of " + std::to_string(n));
  }
  HFVFS_RETURN_IF_ERROR(file->flush());
  return file->close();
}

// Opens `path` with `flags`, writes `data` at `offset`, flushes and closes: the first error,
// wherever the stack reports it (a layer may refuse at open, at write or at flush).
Status TryWrite(Layer& layer, std::string_view path, int flags, uint64_t offset,
                std::string_view data) {
  HFVFS_ASSIGN_OR_RETURN(auto file, layer.open(path, flags));
  Status status = Ok();
  if (!data.empty()) {
    Result<size_t> put = file->write(offset, Bytes(data));
    if (!put) status = put.error();
  }
  if (status) status = file->flush();
  Status closed = file->close();
  if (status && !closed) status = closed;
  return status;
}

std::vector<std::string> Names(const std::vector<DirEntry>& entries) {
  std::vector<std::string> names;
  names.reserve(entries.size());
  for (const DirEntry& e : entries) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  return names;
}

const DirEntry* FindEntry(const std::vector<DirEntry>& entries, std::string_view name) {
  for (const DirEntry& e : entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

#define CONF_ASSERT_OK(expr) ASSERT_TRUE(IsOk(expr)) << #expr
#define CONF_EXPECT_OK(expr) EXPECT_TRUE(IsOk(expr)) << #expr

}  // namespace

// ---- capabilities ----

TEST_P(LayerConformance, CapabilitiesMatchTheDeclaredList) {
  Capabilities caps = top().capabilities();
  const std::pair<Feature, bool> claims[] = {
      {Feature::kWrite, caps.writable},
      {Feature::kRandomWrite, caps.random_write},
      {Feature::kRename, caps.rename},
      {Feature::kRenameDirs, caps.rename_dirs},
      {Feature::kAtomicRename, caps.atomic_rename},
      {Feature::kSymlinks, caps.symlinks},
      {Feature::kSetMode, caps.set_mode},
      {Feature::kSetMtime, caps.set_mtime},
  };
  for (const auto& [feature, claimed] : claims) {
    EXPECT_EQ(claimed, can(feature))
        << "capability '" << FeatureName(feature) << "': the stack claims " << claimed
        << " but its conformance list says it " << (can(feature) ? "can" : "cannot");
  }
  // A stack that cannot write cannot do any of the finer write features either.
  if (!caps.writable) {
    EXPECT_FALSE(caps.random_write || caps.rename || caps.rename_dirs || caps.symlinks ||
                 caps.set_mode || caps.set_mtime)
        << "a read-only stack claims a write capability";
  }
  if (caps.rename_dirs) {
    EXPECT_TRUE(caps.rename) << "rename_dirs without rename";
  }
}

// ---- read side ----

TEST_P(LayerConformance, RootIsADirectory) {
  Result<Attr> root = top().stat("");
  CONF_ASSERT_OK(root);
  EXPECT_TRUE(root->is_dir());
}

TEST_P(LayerConformance, SeedTreeListsCompletelyWithKindsAndSizes) {
  std::vector<std::string> dirs = {""};
  for (const SeedEntry& e : seed_->entries()) {
    if (e.type == FileType::kDirectory) dirs.push_back(e.path);
  }
  for (const std::string& dir : dirs) {
    Result<std::vector<DirEntry>> listed = top().list(dir);
    CONF_ASSERT_OK(listed) << " list('" << dir << "')";
    EXPECT_EQ(Names(*listed), seed_->children(dir)) << "listing of '" << dir << "'";
    for (const DirEntry& entry : *listed) {
      EXPECT_EQ(entry.name.find('/'), std::string::npos) << entry.name;
      EXPECT_NE(entry.name, ".");
      EXPECT_NE(entry.name, "..");
      const SeedEntry* seeded = seed_->find(JoinPath(dir, entry.name));
      if (seeded == nullptr) continue;  // reported by the name comparison above
      EXPECT_EQ(entry.attr.type, seeded->type) << seeded->path;
      if (seeded->type == FileType::kFile) {
        EXPECT_EQ(entry.attr.size, seeded->content.size()) << seeded->path;
      }
    }
  }
}

TEST_P(LayerConformance, StatReportsKindSizeAndVersion) {
  for (const SeedEntry& e : seed_->entries()) {
    Result<Attr> attr = top().stat(e.path);
    CONF_ASSERT_OK(attr) << " stat('" << e.path << "')";
    EXPECT_EQ(attr->type, e.type) << e.path;
    if (e.type == FileType::kFile) {
      EXPECT_EQ(attr->size, e.content.size()) << e.path;
      EXPECT_FALSE(attr->version.empty()) << e.path << ": a file needs a content version";
    }
  }
}

TEST_P(LayerConformance, MissingPathsAndWrongKindsAreErrors) {
  EXPECT_TRUE(HasCode(top().stat("no-such-file"), ENOENT));
  EXPECT_TRUE(HasCode(top().stat("no-such-dir/file"), ENOENT));
  EXPECT_TRUE(HasCode(top().stat("dir/no-such-file"), ENOENT));
  EXPECT_TRUE(HasCode(top().stat("hello.txt/below-a-file"), ENOTDIR));
  EXPECT_TRUE(HasCode(top().list("no-such-dir"), ENOENT));
  EXPECT_TRUE(HasCode(top().list("hello.txt"), ENOTDIR));
  EXPECT_TRUE(HasCode(top().open("no-such-file", O_RDONLY), ENOENT));
  EXPECT_TRUE(HasCode(top().open("dir/no-such-file", O_RDONLY), ENOENT));
  EXPECT_TRUE(HasCode(top().open("dir", O_RDONLY), EISDIR));
  EXPECT_TRUE(HasCode(top().open("hello.txt/below-a-file", O_RDONLY), ENOTDIR));
  // A near miss of an existing name is not found either (no prefix matching).
  EXPECT_TRUE(HasCode(top().stat("hello.tx"), ENOENT));
  EXPECT_TRUE(HasCode(top().stat("di"), ENOENT));
}

TEST_P(LayerConformance, ReadsWholeFilesOfEveryName) {
  for (const SeedEntry& e : seed_->entries()) {
    if (e.type != FileType::kFile) continue;
    Result<std::string> content = ReadAll(top(), e.path, 64 * kKiB);
    CONF_ASSERT_OK(content) << " read('" << e.path << "')";
    EXPECT_TRUE(*content == e.content)
        << e.path << ": " << content->size() << " bytes read, " << e.content.size() << " expected";
  }
}

TEST_P(LayerConformance, ReadsAtOffsetsFillTheBuffer) {
  const SeedEntry* big = seed_->find(SeedTree::kBig);
  ASSERT_NE(big, nullptr);
  const std::string& want = big->content;
  auto file = top().open(SeedTree::kBig, O_RDONLY);
  CONF_ASSERT_OK(file);
  const uint64_t offsets[] = {0,
                              1,
                              4095,
                              4096,
                              65535,
                              65536 + 7,
                              kMiB - 1,
                              kMiB,
                              2 * kMiB + 12345,
                              want.size() - 100000,
                              want.size() - 1};
  const size_t lengths[] = {1, 100, 4096, 65536, 131072 + 3, kMiB, 2 * kMiB + 17};
  for (uint64_t offset : offsets) {
    for (size_t length : lengths) {
      std::vector<std::byte> buf(length);
      Result<size_t> n = (*file)->read(offset, buf);
      CONF_ASSERT_OK(n) << " read at " << offset << " length " << length;
      size_t expect = std::min<uint64_t>(length, want.size() - offset);
      ASSERT_EQ(*n, expect) << "short or long read at offset " << offset << ", length " << length;
      ASSERT_EQ(std::memcmp(buf.data(), want.data() + offset, expect), 0)
          << "wrong bytes at offset " << offset << ", length " << length;
    }
  }
  CONF_EXPECT_OK((*file)->close());
}

// read_lent hands over the same bytes as read, in order, once per successful read: whole
// sequential passes in several sizes (so a cache's lent fill buffers are covered), the offsets
// and lengths above, and reads at and past the end.
TEST_P(LayerConformance, LentReadsDeliverTheSameBytesAsReads) {
  const std::string& want = seed_->find(SeedTree::kBig)->content;
  auto file = top().open(SeedTree::kBig, O_RDONLY);
  CONF_ASSERT_OK(file);
  auto lent_read = [&](uint64_t offset, size_t length, std::string& got) -> Status {
    std::vector<std::byte> buf(length);
    int calls = 0;
    got.clear();
    Status s = (*file)->read_lent(offset, buf, [&](File::LentPieces pieces) {
      ++calls;
      for (const auto& piece : pieces) {
        got.append(reinterpret_cast<const char*>(piece.data()), piece.size());
      }
    });
    if (s && calls != 1) return Err(EPROTO, "deliver called " + std::to_string(calls) + " times");
    return s;
  };
  std::string got;
  for (size_t chunk : {kMiB, 128 * kKiB + 3}) {
    std::string all;
    for (uint64_t offset = 0; offset < want.size(); offset += chunk) {
      CONF_ASSERT_OK(lent_read(offset, chunk, got)) << " pass of " << chunk << " at " << offset;
      all += got;
    }
    ASSERT_EQ(all.size(), want.size()) << "pass of " << chunk;
    EXPECT_TRUE(all == want) << "pass of " << chunk << ": content differs";
  }
  for (uint64_t offset : {uint64_t{0}, uint64_t{4095}, uint64_t{kMiB - 1}, want.size() - 100000}) {
    for (size_t length : {size_t{1}, size_t{65536}, kMiB, 2 * kMiB + 17}) {
      CONF_ASSERT_OK(lent_read(offset, length, got)) << " at " << offset << " length " << length;
      const size_t expect = std::min<uint64_t>(length, want.size() - offset);
      ASSERT_EQ(got.size(), expect) << "at " << offset << ", length " << length;
      ASSERT_TRUE(got == want.substr(offset, expect)) << "wrong bytes at " << offset;
    }
  }
  CONF_ASSERT_OK(lent_read(want.size(), 4096, got));
  EXPECT_EQ(got.size(), 0u) << "a lent read at the end";
  CONF_ASSERT_OK(lent_read(want.size() + 4096, 4096, got));
  EXPECT_EQ(got.size(), 0u) << "a lent read past the end";
  CONF_EXPECT_OK((*file)->close());
}

TEST_P(LayerConformance, ReadsAtAndPastTheEnd) {
  auto file = top().open(SeedTree::kHello, O_RDONLY);
  CONF_ASSERT_OK(file);
  const size_t size = seed_->find(SeedTree::kHello)->content.size();
  std::vector<std::byte> buf(64);
  Result<size_t> at_end = (*file)->read(size, buf);
  CONF_ASSERT_OK(at_end);
  EXPECT_EQ(*at_end, 0u);
  Result<size_t> past = (*file)->read(size + 4096, buf);
  CONF_ASSERT_OK(past);
  EXPECT_EQ(*past, 0u);
  Result<size_t> tail = (*file)->read(size - 3, buf);
  CONF_ASSERT_OK(tail);
  EXPECT_EQ(*tail, 3u);
  Result<size_t> none = (*file)->read(0, std::span<std::byte>());
  CONF_ASSERT_OK(none);
  EXPECT_EQ(*none, 0u);
  CONF_EXPECT_OK((*file)->close());
  if (can(Feature::kEmptyFiles)) {
    Result<std::string> empty = ReadAll(top(), SeedTree::kEmpty);
    CONF_ASSERT_OK(empty);
    EXPECT_EQ(*empty, "");
  }
}

TEST_P(LayerConformance, ReadsABigFileSequentiallyInSeveralChunkSizes) {
  const std::string& want = seed_->find(SeedTree::kBig)->content;
  for (size_t chunk : {kMiB, 128 * kKiB, size_t{1000}}) {
    Result<std::string> got = ReadAll(top(), SeedTree::kBig, chunk);
    CONF_ASSERT_OK(got) << " chunk " << chunk;
    ASSERT_EQ(got->size(), want.size()) << "chunk " << chunk;
    EXPECT_TRUE(*got == want) << "chunk " << chunk << ": content differs";
  }
}

TEST_P(LayerConformance, OpenFileStatMatchesLayerStat) {
  Result<Attr> by_path = top().stat(SeedTree::kBig);
  CONF_ASSERT_OK(by_path);
  auto file = top().open(SeedTree::kBig, O_RDONLY);
  CONF_ASSERT_OK(file);
  Result<Attr> by_handle = (*file)->stat();
  CONF_ASSERT_OK(by_handle);
  EXPECT_EQ(by_handle->size, by_path->size);
  EXPECT_EQ(by_handle->type, FileType::kFile);
  CONF_EXPECT_OK((*file)->close());
}

TEST_P(LayerConformance, ParallelReadsFromThreads) {
  const std::string& want = seed_->find(SeedTree::kBig)->content;
  auto shared = top().open(SeedTree::kBig, O_RDONLY);
  CONF_ASSERT_OK(shared);
  File& shared_file = **shared;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      auto own = top().open(SeedTree::kBig, O_RDONLY);
      if (!own) {
        ++failures;
        return;
      }
      for (int i = 0; i < 40; ++i) {
        File& file = (i % 2 == 0) ? shared_file : **own;
        uint64_t offset = rng() % want.size();
        size_t length = 1 + rng() % (300 * kKiB);
        std::vector<std::byte> buf(length);
        Result<size_t> n = file.read(offset, buf);
        size_t expect = std::min<uint64_t>(length, want.size() - offset);
        if (!n || *n != expect || std::memcmp(buf.data(), want.data() + offset, expect) != 0) {
          ++failures;
        }
      }
      if (!(*own)->close()) ++failures;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0) << "reads from threads returned errors or wrong bytes";
  CONF_EXPECT_OK(shared_file.close());
}

TEST_P(LayerConformance, ParallelStatAndListFromThreads) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 5; ++round) {
        for (const SeedEntry& e : seed_->entries()) {
          Result<Attr> attr = top().stat(e.path);
          if (!attr || attr->type != e.type) ++failures;
        }
        Result<std::vector<DirEntry>> listed = top().list(SeedTree::kMany);
        if (!listed || listed->size() != seed_->children(SeedTree::kMany).size()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_P(LayerConformance, ListsAManyFileFolderCompletely) {
  Result<std::vector<DirEntry>> listed = top().list(SeedTree::kMany);
  CONF_ASSERT_OK(listed);
  EXPECT_EQ(listed->size(), GetParam().many_files);
  EXPECT_EQ(Names(*listed), seed_->children(SeedTree::kMany));
}

TEST_P(LayerConformance, VersionIsStableWhileContentIsUnchanged) {
  Result<Attr> first = top().stat(SeedTree::kHello);
  CONF_ASSERT_OK(first);
  CONF_ASSERT_OK(ReadAll(top(), SeedTree::kHello));
  Result<Attr> second = top().stat(SeedTree::kHello);
  CONF_ASSERT_OK(second);
  EXPECT_EQ(first->version, second->version);
  Result<std::vector<DirEntry>> listed = top().list("");
  CONF_ASSERT_OK(listed);
  const DirEntry* entry = FindEntry(*listed, SeedTree::kHello);
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->attr.version, first->version) << "list and stat disagree on the version";
}

TEST_P(LayerConformance, VersionChangesWhenContentChanges) {
  Result<Attr> before = top().stat(SeedTree::kHello);
  CONF_ASSERT_OK(before);
  const std::string changed = "HELLO, WORLD\n";  // same size: the size alone cannot tell
  if (can(Feature::kWrite) && can(Feature::kRandomWrite)) {
    CONF_ASSERT_OK(TryWrite(top(), SeedTree::kHello, O_WRONLY, 0, changed));
  } else if (can(Feature::kWrite) && can(Feature::kOverwrite)) {
    CONF_ASSERT_OK(TryWrite(top(), SeedTree::kHello, O_WRONLY | O_TRUNC, 0, changed));
  } else if (stack_.backing.write && can(Feature::kSeeBackingChanges)) {
    CONF_ASSERT_OK(stack_.backing.write(SeedTree::kHello, changed));
  } else {
    // Nothing can change the content: a write is refused and the version stays.
    EXPECT_TRUE(IsRefusal(TryWrite(top(), SeedTree::kHello, O_WRONLY, 0, changed).code()));
    Result<Attr> after = top().stat(SeedTree::kHello);
    CONF_ASSERT_OK(after);
    EXPECT_EQ(after->version, before->version);
    return;
  }
  Result<Attr> after = top().stat(SeedTree::kHello);
  CONF_ASSERT_OK(after);
  EXPECT_NE(after->version, before->version) << "content changed, version did not";
  Result<std::string> content = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, changed);
}

TEST_P(LayerConformance, ChangesInTheBackingStoreShowThrough) {
  if (!stack_.backing.write || !can(Feature::kSeeBackingChanges)) {
    // The stack gives no way to change its store behind its back, or does not promise to see
    // it: it must at least keep serving what it has.
    CONF_EXPECT_OK(top().stat(SeedTree::kHello));
    EXPECT_TRUE(!stack_.backing.write || !can(Feature::kSeeBackingChanges));
    return;
  }
  CONF_ASSERT_OK(stack_.backing.write("from-backing.txt", "made behind the stack\n"));
  Result<Attr> attr = top().stat("from-backing.txt");
  CONF_ASSERT_OK(attr);
  EXPECT_EQ(attr->size, 22u);
  Result<std::vector<DirEntry>> listed = top().list("");
  CONF_ASSERT_OK(listed);
  EXPECT_NE(FindEntry(*listed, "from-backing.txt"), nullptr);
  Result<std::string> content = ReadAll(top(), "from-backing.txt");
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, "made behind the stack\n");
  // A change of size and content of a file already read.
  CONF_ASSERT_OK(ReadAll(top(), "dir/a.txt"));
  CONF_ASSERT_OK(stack_.backing.write("dir/a.txt", "alpha, longer now\n"));
  Result<std::string> changed = ReadAll(top(), "dir/a.txt");
  CONF_ASSERT_OK(changed);
  EXPECT_EQ(*changed, "alpha, longer now\n");
}

// ---- write side ----

TEST_P(LayerConformance, CreateWriteAndReadBack) {
  std::string content = PatternBytes(70000 + 1005, 3);
  if (!can(Feature::kWrite)) {
    EXPECT_TRUE(IsRefusal(WriteNew(top(), "new.txt", content).code()));
    EXPECT_TRUE(HasCode(top().stat("new.txt"), ENOENT));
    return;
  }
  auto file = top().create("new.txt", 0644, O_WRONLY | O_CREAT | O_EXCL);
  CONF_ASSERT_OK(file);
  size_t offset = 0;
  for (size_t piece : {size_t{1000}, size_t{70000}, size_t{5}}) {
    Result<size_t> put =
        (*file)->write(offset, Bytes(std::string_view(content).substr(offset, piece)));
    CONF_ASSERT_OK(put);
    EXPECT_EQ(*put, piece);
    offset += piece;
  }
  Result<Attr> open_attr = (*file)->stat();
  CONF_ASSERT_OK(open_attr);
  EXPECT_EQ(open_attr->size, offset) << "an open handle's size includes its writes";
  CONF_ASSERT_OK((*file)->flush());
  CONF_ASSERT_OK((*file)->close());
  content.resize(offset);
  Result<Attr> attr = top().stat("new.txt");
  CONF_ASSERT_OK(attr);
  EXPECT_TRUE(attr->is_file());
  EXPECT_EQ(attr->size, content.size());
  Result<std::vector<DirEntry>> listed = top().list("");
  CONF_ASSERT_OK(listed);
  const DirEntry* entry = FindEntry(*listed, "new.txt");
  ASSERT_NE(entry, nullptr) << "a created file is listed";
  EXPECT_EQ(entry->attr.size, content.size());
  Result<std::string> back = ReadAll(top(), "new.txt");
  CONF_ASSERT_OK(back);
  EXPECT_TRUE(*back == content);
}

TEST_P(LayerConformance, CreateInSubfoldersAndWithOddNames) {
  const std::string names[] = {"dir/sub/new one.txt",
                               "dir/\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E.txt", "emptydir/x"};
  for (const std::string& name : names) {
    if (!can(Feature::kWrite)) {
      EXPECT_TRUE(IsRefusal(WriteNew(top(), name, "x").code())) << name;
      continue;
    }
    CONF_ASSERT_OK(WriteNew(top(), name, "content of " + name)) << " " << name;
    Result<std::string> back = ReadAll(top(), name);
    CONF_ASSERT_OK(back);
    EXPECT_EQ(*back, "content of " + name);
    Result<std::vector<DirEntry>> listed = top().list(ParentPath(name));
    CONF_ASSERT_OK(listed);
    EXPECT_NE(FindEntry(*listed, BaseName(name)), nullptr) << name;
  }
  if (can(Feature::kWrite)) {
    EXPECT_TRUE(HasCode(top().create("no-such-dir/x", 0644, O_WRONLY | O_CREAT), ENOENT));
    EXPECT_TRUE(HasCode(top().create("hello.txt/x", 0644, O_WRONLY | O_CREAT), ENOTDIR));
  }
}

TEST_P(LayerConformance, ExclusiveCreateOfAnExistingNameIsEEXIST) {
  auto made = top().create(SeedTree::kHello, 0644, O_WRONLY | O_CREAT | O_EXCL);
  if (!can(Feature::kWrite)) {
    EXPECT_TRUE(!made.ok() && (made.code() == EEXIST || IsRefusal(made.code())))
        << "got " << std::strerror(made.code());
  } else {
    EXPECT_TRUE(HasCode(made, EEXIST));
    EXPECT_TRUE(HasCode(top().create("dir", 0644, O_WRONLY | O_CREAT | O_EXCL), EEXIST));
  }
  Result<std::string> content = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, seed_->find(SeedTree::kHello)->content);
}

TEST_P(LayerConformance, WritesAndReadsBackABigFileInMiBChunks) {
  std::string content = PatternBytes(3 * kMiB + kMiB / 2 + 3, 4);
  if (!can(Feature::kWrite)) {
    EXPECT_TRUE(IsRefusal(WriteNew(top(), "big-new.bin", content).code()));
    return;
  }
  CONF_ASSERT_OK(WriteNew(top(), "big-new.bin", content));
  Result<Attr> attr = top().stat("big-new.bin");
  CONF_ASSERT_OK(attr);
  EXPECT_EQ(attr->size, content.size());
  Result<std::string> back = ReadAll(top(), "big-new.bin");
  CONF_ASSERT_OK(back);
  ASSERT_EQ(back->size(), content.size());
  EXPECT_TRUE(*back == content);
  auto file = top().open("big-new.bin", O_RDONLY);
  CONF_ASSERT_OK(file);
  std::vector<std::byte> buf(kMiB);
  Result<size_t> n = (*file)->read(kMiB + kMiB / 2, buf);
  CONF_ASSERT_OK(n);
  ASSERT_EQ(*n, kMiB);
  EXPECT_EQ(std::memcmp(buf.data(), content.data() + kMiB + kMiB / 2, kMiB), 0);
  CONF_EXPECT_OK((*file)->close());
}

TEST_P(LayerConformance, FlushAndFsyncKeepTheHandleUsable) {
  if (!can(Feature::kWrite)) {
    // Read handles flush and fsync as no-ops.
    auto file = top().open(SeedTree::kHello, O_RDONLY);
    CONF_ASSERT_OK(file);
    CONF_EXPECT_OK((*file)->flush());
    CONF_EXPECT_OK((*file)->fsync(false));
    CONF_EXPECT_OK((*file)->close());
    return;
  }
  auto file = top().create("flushed.txt", 0644, O_WRONLY | O_CREAT | O_EXCL);
  CONF_ASSERT_OK(file);
  CONF_ASSERT_OK((*file)->write(0, Bytes("first;")));
  CONF_ASSERT_OK((*file)->flush());
  // close(2) of a dup flushes, then the application goes on writing (`echo > f` does).
  CONF_ASSERT_OK((*file)->write(6, Bytes("second;")));
  CONF_ASSERT_OK((*file)->fsync(true));
  CONF_ASSERT_OK((*file)->write(13, Bytes("third")));
  CONF_ASSERT_OK((*file)->fsync(false));
  CONF_ASSERT_OK((*file)->flush());
  CONF_ASSERT_OK((*file)->flush());
  CONF_ASSERT_OK((*file)->close());
  Result<std::string> back = ReadAll(top(), "flushed.txt");
  CONF_ASSERT_OK(back);
  EXPECT_EQ(*back, "first;second;third");
}

TEST_P(LayerConformance, RandomWritesOverwriteAndExtend) {
  const std::string before = seed_->find(SeedTree::kHello)->content;  // "hello, world\n"
  if (!can(Feature::kWrite) || !can(Feature::kRandomWrite)) {
    EXPECT_TRUE(IsRefusal(TryWrite(top(), SeedTree::kHello, O_WRONLY, 7, "WORLD").code()));
    Result<std::string> content = ReadAll(top(), SeedTree::kHello);
    CONF_ASSERT_OK(content);
    EXPECT_EQ(*content, before) << "a refused write left a trace";
    return;
  }
  auto file = top().open(SeedTree::kHello, O_RDWR);
  CONF_ASSERT_OK(file);
  CONF_ASSERT_OK((*file)->write(7, Bytes("WORLD")));
  CONF_ASSERT_OK((*file)->write(before.size() + 10, Bytes("tail")));  // leaves a hole
  Result<Attr> open_attr = (*file)->stat();
  CONF_ASSERT_OK(open_attr);
  EXPECT_EQ(open_attr->size, before.size() + 14);
  CONF_ASSERT_OK((*file)->flush());
  CONF_ASSERT_OK((*file)->close());
  std::string want = "hello, WORLD\n" + std::string(10, '\0') + "tail";
  Result<std::string> content = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, want);
  // Writes out of order into a new file.
  auto fresh = top().create("scattered.bin", 0644, O_RDWR | O_CREAT | O_EXCL);
  CONF_ASSERT_OK(fresh);
  CONF_ASSERT_OK((*fresh)->write(100000, Bytes("end")));
  CONF_ASSERT_OK((*fresh)->write(0, Bytes("start")));
  CONF_ASSERT_OK((*fresh)->write(65536, Bytes("middle")));
  CONF_ASSERT_OK((*fresh)->close());
  std::string scattered(100003, '\0');
  scattered.replace(0, 5, "start");
  scattered.replace(65536, 6, "middle");
  scattered.replace(100000, 3, "end");
  Result<std::string> back = ReadAll(top(), "scattered.bin");
  CONF_ASSERT_OK(back);
  EXPECT_TRUE(*back == scattered);
}

TEST_P(LayerConformance, TruncateShrinksAndExtendsWithZeros) {
  const std::string before = seed_->find(SeedTree::kHello)->content;
  SetAttr to_five;
  to_five.set_size = true;
  to_five.size = 5;
  if (!can(Feature::kWrite) || !can(Feature::kRandomWrite)) {
    EXPECT_TRUE(IsRefusal(top().setattr(SeedTree::kHello, to_five).code()));
    Result<Attr> attr = top().stat(SeedTree::kHello);
    CONF_ASSERT_OK(attr);
    EXPECT_EQ(attr->size, before.size());
    return;
  }
  CONF_ASSERT_OK(top().setattr(SeedTree::kHello, to_five));
  EXPECT_EQ(top().stat(SeedTree::kHello)->size, 5u);
  Result<std::string> shrunk = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(shrunk);
  EXPECT_EQ(*shrunk, "hello");
  SetAttr to_twenty = to_five;
  to_twenty.size = 20;
  CONF_ASSERT_OK(top().setattr(SeedTree::kHello, to_twenty));
  Result<std::string> grown = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(grown);
  EXPECT_EQ(*grown, "hello" + std::string(15, '\0'));
  // Through an open handle, on the big file, to a size inside its content.
  auto file = top().open(SeedTree::kBig, O_RDWR);
  CONF_ASSERT_OK(file);
  CONF_ASSERT_OK((*file)->truncate(kMiB + 3));
  Result<Attr> open_attr = (*file)->stat();
  CONF_ASSERT_OK(open_attr);
  EXPECT_EQ(open_attr->size, kMiB + 3);
  CONF_ASSERT_OK((*file)->close());
  Result<std::string> cut = ReadAll(top(), SeedTree::kBig);
  CONF_ASSERT_OK(cut);
  EXPECT_TRUE(*cut == seed_->find(SeedTree::kBig)->content.substr(0, kMiB + 3));
  SetAttr to_zero = to_five;
  to_zero.size = 0;
  CONF_ASSERT_OK(top().setattr(SeedTree::kBig, to_zero));
  EXPECT_EQ(top().stat(SeedTree::kBig)->size, 0u);
  EXPECT_TRUE(HasCode(top().setattr("no-such-file", to_zero), ENOENT));
}

TEST_P(LayerConformance, AppendsAtTheEnd) {
  const std::string before = seed_->find(SeedTree::kHello)->content;
  if (!can(Feature::kWrite) || !can(Feature::kRandomWrite)) {
    EXPECT_TRUE(IsRefusal(
        TryWrite(top(), SeedTree::kHello, O_WRONLY | O_APPEND, before.size(), "more\n").code()));
    return;
  }
  CONF_ASSERT_OK(TryWrite(top(), SeedTree::kHello, O_WRONLY | O_APPEND, before.size(), "more\n"));
  Result<std::string> content = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, before + "more\n");
}

TEST_P(LayerConformance, OverwriteThroughOpenWithTruncate) {
  const std::string before = seed_->find("dir/a.txt")->content;
  if (!can(Feature::kWrite) || !can(Feature::kOverwrite)) {
    EXPECT_TRUE(IsRefusal(TryWrite(top(), "dir/a.txt", O_WRONLY | O_TRUNC, 0, "new").code()));
    Result<std::string> content = ReadAll(top(), "dir/a.txt");
    CONF_ASSERT_OK(content);
    EXPECT_EQ(*content, before);
    return;
  }
  CONF_ASSERT_OK(TryWrite(top(), "dir/a.txt", O_WRONLY | O_TRUNC, 0, "rewritten"));
  Result<std::string> content = ReadAll(top(), "dir/a.txt");
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, "rewritten");
  EXPECT_EQ(top().stat("dir/a.txt")->size, 9u);
}

// ---- namespace operations ----

TEST_P(LayerConformance, MkdirAndRmdir) {
  if (!can(Feature::kWrite)) {
    EXPECT_TRUE(IsRefusal(top().mkdir("newdir", 0755).code()));
    EXPECT_TRUE(IsRefusal(top().rmdir(SeedTree::kEmptyDir).code()));
    CONF_EXPECT_OK(top().stat(SeedTree::kEmptyDir));
    return;
  }
  CONF_ASSERT_OK(top().mkdir("newdir", 0755));
  Result<Attr> attr = top().stat("newdir");
  CONF_ASSERT_OK(attr);
  EXPECT_TRUE(attr->is_dir());
  Result<std::vector<DirEntry>> empty = top().list("newdir");
  CONF_ASSERT_OK(empty);
  EXPECT_TRUE(empty->empty());
  Result<std::vector<DirEntry>> root = top().list("");
  CONF_ASSERT_OK(root);
  const DirEntry* entry = FindEntry(*root, "newdir");
  ASSERT_NE(entry, nullptr);
  EXPECT_TRUE(entry->attr.is_dir());
  EXPECT_TRUE(HasCode(top().mkdir("newdir", 0755), EEXIST));
  EXPECT_TRUE(HasCode(top().mkdir(SeedTree::kHello, 0755), EEXIST));
  EXPECT_TRUE(HasCode(top().mkdir("no-such-dir/x", 0755), ENOENT));
  EXPECT_TRUE(HasCode(top().mkdir("hello.txt/x", 0755), ENOTDIR));
  CONF_ASSERT_OK(top().mkdir("newdir/nested", 0755));
  CONF_ASSERT_OK(WriteNew(top(), "newdir/nested/f.txt", "f"));
  EXPECT_TRUE(HasCode(top().rmdir("newdir/nested"), ENOTEMPTY));
  EXPECT_TRUE(HasCode(top().rmdir("newdir/nested/f.txt"), ENOTDIR));
  EXPECT_TRUE(HasCode(top().rmdir("no-such-dir"), ENOENT));
  CONF_ASSERT_OK(top().remove("newdir/nested/f.txt"));
  CONF_ASSERT_OK(top().rmdir("newdir/nested"));
  CONF_ASSERT_OK(top().rmdir("newdir"));
  EXPECT_TRUE(HasCode(top().stat("newdir"), ENOENT));
  CONF_ASSERT_OK(top().rmdir(SeedTree::kEmptyDir));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kEmptyDir), ENOENT));
  Result<std::vector<DirEntry>> after = top().list("");
  CONF_ASSERT_OK(after);
  EXPECT_EQ(FindEntry(*after, SeedTree::kEmptyDir), nullptr);
}

TEST_P(LayerConformance, RemoveFiles) {
  if (!can(Feature::kWrite)) {
    EXPECT_TRUE(IsRefusal(top().remove(SeedTree::kHello).code()));
    CONF_EXPECT_OK(top().stat(SeedTree::kHello));
    return;
  }
  CONF_ASSERT_OK(top().remove(SeedTree::kHello));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kHello), ENOENT));
  EXPECT_TRUE(HasCode(top().open(SeedTree::kHello, O_RDONLY), ENOENT));
  Result<std::vector<DirEntry>> listed = top().list("");
  CONF_ASSERT_OK(listed);
  EXPECT_EQ(FindEntry(*listed, SeedTree::kHello), nullptr);
  EXPECT_TRUE(HasCode(top().remove(SeedTree::kHello), ENOENT));
  EXPECT_TRUE(HasCode(top().remove("dir/no-such-file"), ENOENT));
  Status on_dir = top().remove(SeedTree::kDir);
  EXPECT_TRUE(on_dir.code() == EISDIR || on_dir.code() == EPERM)
      << "remove of a folder: " << std::strerror(on_dir.code());
  CONF_EXPECT_OK(top().stat("dir/a.txt"));
  CONF_ASSERT_OK(top().remove(SeedTree::kNested));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kNested), ENOENT));
  // The name is free again.
  CONF_ASSERT_OK(WriteNew(top(), SeedTree::kHello, "again"));
  Result<std::string> again = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(again);
  EXPECT_EQ(*again, "again");
}

TEST_P(LayerConformance, AnOpenFileKeepsReadingAfterRemove) {
  const std::string& want = seed_->find(SeedTree::kBig)->content;
  auto file = top().open(SeedTree::kBig, O_RDONLY);
  CONF_ASSERT_OK(file);
  Status removed = top().remove(SeedTree::kBig);
  if (!can(Feature::kWrite)) {
    EXPECT_TRUE(IsRefusal(removed.code()));
  } else {
    CONF_ASSERT_OK(removed);
  }
  if (!can(Feature::kWrite) || can(Feature::kReadAfterRemove)) {
    Result<std::string> content = ReadOpen(**file, kMiB);
    CONF_ASSERT_OK(content);
    EXPECT_TRUE(*content == want);
  }
  CONF_EXPECT_OK((*file)->close());
}

TEST_P(LayerConformance, RenameFiles) {
  const std::string hello = seed_->find(SeedTree::kHello)->content;
  if (!can(Feature::kWrite) || !can(Feature::kRename)) {
    EXPECT_TRUE(IsRefusal(top().rename(SeedTree::kHello, "renamed.txt", false).code()));
    CONF_EXPECT_OK(top().stat(SeedTree::kHello));
    EXPECT_TRUE(HasCode(top().stat("renamed.txt"), ENOENT));
    return;
  }
  CONF_ASSERT_OK(top().rename(SeedTree::kHello, "renamed.txt", false));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kHello), ENOENT));
  Result<std::string> moved = ReadAll(top(), "renamed.txt");
  CONF_ASSERT_OK(moved);
  EXPECT_EQ(*moved, hello);
  // Into another folder.
  CONF_ASSERT_OK(top().rename("renamed.txt", "dir/sub/moved.txt", false));
  EXPECT_TRUE(HasCode(top().stat("renamed.txt"), ENOENT));
  Result<std::vector<DirEntry>> listed = top().list("dir/sub");
  CONF_ASSERT_OK(listed);
  EXPECT_NE(FindEntry(*listed, "moved.txt"), nullptr);
  // Over an existing file: replaced.
  CONF_ASSERT_OK(top().rename("dir/sub/moved.txt", "dir/a.txt", false));
  Result<std::string> replaced = ReadAll(top(), "dir/a.txt");
  CONF_ASSERT_OK(replaced);
  EXPECT_EQ(*replaced, hello);
  EXPECT_TRUE(HasCode(top().stat("dir/sub/moved.txt"), ENOENT));
  Result<std::vector<DirEntry>> dir = top().list(SeedTree::kDir);
  CONF_ASSERT_OK(dir);
  EXPECT_EQ(Names(*dir), (std::vector<std::string>{"a.txt", "sub"}));
  // A big file keeps every byte.
  CONF_ASSERT_OK(top().rename(SeedTree::kBig, "dir/big-moved.bin", false));
  Result<std::string> big = ReadAll(top(), "dir/big-moved.bin");
  CONF_ASSERT_OK(big);
  EXPECT_TRUE(*big == seed_->find(SeedTree::kBig)->content);
  EXPECT_TRUE(HasCode(top().rename("no-such-file", "x", false), ENOENT));
  EXPECT_TRUE(HasCode(top().rename("dir/a.txt", "no-such-dir/x", false), ENOENT));
}

TEST_P(LayerConformance, AnOpenFileKeepsReadingAfterRename) {
  const std::string& want = seed_->find(SeedTree::kNested)->content;
  auto file = top().open(SeedTree::kNested, O_RDONLY);
  CONF_ASSERT_OK(file);
  std::vector<std::byte> head(1000);
  CONF_ASSERT_OK((*file)->read(0, head));
  Status renamed = top().rename(SeedTree::kNested, "dir/renamed-while-open.txt", false);
  if (!can(Feature::kWrite) || !can(Feature::kRename)) {
    EXPECT_TRUE(IsRefusal(renamed.code()));
  } else {
    CONF_ASSERT_OK(renamed);
  }
  // A rename by copy and delete loses the source object, as a remove does.
  if (!can(Feature::kWrite) || !can(Feature::kRename) || can(Feature::kReadAfterRemove)) {
    Result<std::string> content = ReadOpen(**file, 4096);
    CONF_ASSERT_OK(content);
    EXPECT_TRUE(*content == want);
  }
  CONF_EXPECT_OK((*file)->close());
}

TEST_P(LayerConformance, RenameNoreplaceRefusesAnExistingTarget) {
  if (!can(Feature::kWrite) || !can(Feature::kRename)) {
    EXPECT_TRUE(IsRefusal(top().rename(SeedTree::kHello, "fresh.txt", true).code()));
    return;
  }
  EXPECT_TRUE(HasCode(top().rename(SeedTree::kHello, "dir/a.txt", true), EEXIST));
  Result<std::string> kept = ReadAll(top(), "dir/a.txt");
  CONF_ASSERT_OK(kept);
  EXPECT_EQ(*kept, seed_->find("dir/a.txt")->content);
  CONF_EXPECT_OK(top().stat(SeedTree::kHello));
  CONF_ASSERT_OK(top().rename(SeedTree::kHello, "fresh.txt", true));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kHello), ENOENT));
  Result<std::string> moved = ReadAll(top(), "fresh.txt");
  CONF_ASSERT_OK(moved);
  EXPECT_EQ(*moved, seed_->find(SeedTree::kHello)->content);
}

TEST_P(LayerConformance, RenameDirectories) {
  if (!can(Feature::kWrite) || !can(Feature::kRenameDirs)) {
    EXPECT_TRUE(IsRefusal(top().rename(SeedTree::kDir, "dir2", false).code(), true));
    Result<std::string> nested = ReadAll(top(), SeedTree::kNested);
    CONF_ASSERT_OK(nested);
    EXPECT_TRUE(*nested == seed_->find(SeedTree::kNested)->content);
    EXPECT_TRUE(HasCode(top().stat("dir2"), ENOENT));
    return;
  }
  CONF_ASSERT_OK(top().rename(SeedTree::kDir, "dir2", false));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kDir), ENOENT));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kNested), ENOENT));
  Result<std::vector<DirEntry>> listed = top().list("dir2");
  CONF_ASSERT_OK(listed);
  EXPECT_EQ(Names(*listed), (std::vector<std::string>{"a.txt", "sub"}));
  Result<std::string> nested = ReadAll(top(), "dir2/sub/deep.txt");
  CONF_ASSERT_OK(nested);
  EXPECT_TRUE(*nested == seed_->find(SeedTree::kNested)->content);
  // Onto a non-empty folder: refused; onto an empty one: replaces it.
  Status onto_full = top().rename("dir2/sub", SeedTree::kMany, false);
  EXPECT_TRUE(onto_full.code() == ENOTEMPTY || onto_full.code() == EEXIST)
      << "rename onto a non-empty folder: " << std::strerror(onto_full.code());
  EXPECT_TRUE(HasCode(top().rename("dir2", SeedTree::kEmptyDir, true), EEXIST));
  CONF_ASSERT_OK(top().rename("dir2", SeedTree::kEmptyDir, false));
  Result<std::string> again = ReadAll(top(), "emptydir/sub/deep.txt");
  CONF_ASSERT_OK(again);
  EXPECT_TRUE(*again == seed_->find(SeedTree::kNested)->content);
  // A folder into its own subtree is impossible.
  EXPECT_TRUE(HasCode(top().rename(SeedTree::kEmptyDir, "emptydir/sub/inside", false), EINVAL));
}

TEST_P(LayerConformance, SymlinksAndReadlink) {
  if (!can(Feature::kWrite) || !can(Feature::kSymlinks)) {
    EXPECT_TRUE(IsRefusal(top().symlink(SeedTree::kHello, "newlink").code()));
    EXPECT_TRUE(HasCode(top().stat("newlink"), ENOENT));
    return;
  }
  Result<Attr> seeded = top().stat(SeedTree::kLink);
  CONF_ASSERT_OK(seeded);
  EXPECT_TRUE(seeded->is_symlink());
  Result<std::string> target = top().readlink(SeedTree::kLink);
  CONF_ASSERT_OK(target);
  EXPECT_EQ(*target, SeedTree::kHello);
  CONF_ASSERT_OK(top().symlink("../dir/a.txt", "dir/sub/up-link"));
  Result<Attr> made = top().stat("dir/sub/up-link");
  CONF_ASSERT_OK(made);
  EXPECT_TRUE(made->is_symlink());
  Result<std::string> made_target = top().readlink("dir/sub/up-link");
  CONF_ASSERT_OK(made_target);
  EXPECT_EQ(*made_target, "../dir/a.txt");
  Result<std::vector<DirEntry>> listed = top().list("dir/sub");
  CONF_ASSERT_OK(listed);
  const DirEntry* entry = FindEntry(*listed, "up-link");
  ASSERT_NE(entry, nullptr);
  EXPECT_TRUE(entry->attr.is_symlink());
  // A dangling target is stored as is.
  CONF_ASSERT_OK(top().symlink("nowhere/at/all", "dangling"));
  EXPECT_EQ(*top().readlink("dangling"), "nowhere/at/all");
  EXPECT_TRUE(HasCode(top().symlink("x", SeedTree::kHello), EEXIST));
  EXPECT_TRUE(HasCode(top().readlink(SeedTree::kHello), EINVAL));
  EXPECT_TRUE(HasCode(top().readlink("no-such-link"), ENOENT));
  // Removing a link leaves its target.
  CONF_ASSERT_OK(top().remove(SeedTree::kLink));
  EXPECT_TRUE(HasCode(top().stat(SeedTree::kLink), ENOENT));
  CONF_EXPECT_OK(top().stat(SeedTree::kHello));
}

TEST_P(LayerConformance, SetModePersists) {
  SetAttr change;
  change.set_mode = true;
  change.mode = 0600;
  if (!can(Feature::kWrite) || !can(Feature::kSetMode)) {
    EXPECT_TRUE(IsRefusal(top().setattr(SeedTree::kHello, change).code()));
    return;
  }
  CONF_ASSERT_OK(top().setattr(SeedTree::kHello, change));
  EXPECT_EQ(top().stat(SeedTree::kHello)->mode, 0600u);
  change.mode = 0755;
  CONF_ASSERT_OK(top().setattr(SeedTree::kDir, change));
  EXPECT_EQ(top().stat(SeedTree::kDir)->mode, 0755u);
  change.mode = 0640;
  CONF_ASSERT_OK(top().setattr(SeedTree::kHello, change));
  Result<std::vector<DirEntry>> listed = top().list("");
  CONF_ASSERT_OK(listed);
  const DirEntry* entry = FindEntry(*listed, SeedTree::kHello);
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->attr.mode, 0640u);
  EXPECT_TRUE(HasCode(top().setattr("no-such-file", change), ENOENT));
  // Content is untouched by chmod.
  Result<std::string> content = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, seed_->find(SeedTree::kHello)->content);
}

TEST_P(LayerConformance, SetMtimePersists) {
  SetAttr change;
  change.set_mtime = true;
  change.mtime_ns = int64_t{1'600'000'000} * 1'000'000'000 + 123'456'789;
  if (!can(Feature::kWrite) || !can(Feature::kSetMtime)) {
    EXPECT_TRUE(IsRefusal(top().setattr(SeedTree::kHello, change).code()));
    return;
  }
  CONF_ASSERT_OK(top().setattr(SeedTree::kHello, change));
  Result<Attr> attr = top().stat(SeedTree::kHello);
  CONF_ASSERT_OK(attr);
  // Stores may keep whole seconds only.
  EXPECT_LE(std::llabs(attr->mtime_ns - change.mtime_ns), int64_t{1'000'000'000});
  CONF_ASSERT_OK(top().setattr(SeedTree::kDir, change));
  EXPECT_LE(std::llabs(top().stat(SeedTree::kDir)->mtime_ns - change.mtime_ns),
            int64_t{1'000'000'000});
  Result<std::string> content = ReadAll(top(), SeedTree::kHello);
  CONF_ASSERT_OK(content);
  EXPECT_EQ(*content, seed_->find(SeedTree::kHello)->content);
}

TEST_P(LayerConformance, StatfsAnswers) {
  Result<FsStats> stats = top().statfs();
  CONF_ASSERT_OK(stats);
  EXPECT_GT(stats->name_max, 0u);
  if (can(Feature::kStatfs)) {
    EXPECT_GT(stats->block_size, 0u);
    EXPECT_GT(stats->total_blocks, 0u);
    EXPECT_LE(stats->free_blocks, stats->total_blocks);
  }
}

TEST_P(LayerConformance, WrittenDataReachesTheBackingStore) {
  const std::string content = PatternBytes(200'003, 5);
  if (can(Feature::kWrite)) {
    CONF_ASSERT_OK(WriteNew(top(), "durable.bin", content));
  }
  // Whatever the stack stages or delays, shutdown delivers it.
  CONF_ASSERT_OK(ShutdownNow());
  if (!stack_.backing.read) return;  // no plain access to the store: shutdown was the check
  if (can(Feature::kWrite)) {
    Result<std::string> stored = stack_.backing.read("durable.bin");
    CONF_ASSERT_OK(stored);
    EXPECT_TRUE(*stored == content) << "the store holds " << stored->size() << " bytes";
  } else {
    Result<std::string> stored = stack_.backing.read(SeedTree::kHello);
    CONF_ASSERT_OK(stored);
    EXPECT_EQ(*stored, seed_->find(SeedTree::kHello)->content) << "a read-only stack changed it";
  }
}

TEST_P(LayerConformance, ParallelWritersOnDistinctFiles) {
  if (!can(Feature::kWrite)) {
    std::atomic<int> refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        if (IsRefusal(WriteNew(top(), "t" + std::to_string(t), "x").code())) ++refused;
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(refused.load(), 4);
    return;
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        std::string name = "dir/w" + std::to_string(t) + "-" + std::to_string(i);
        if (!WriteNew(top(), name, PatternBytes(65536 + t * 1000 + i, t * 10 + i), 8192)) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0) << "parallel creates failed";
  for (int t = 0; t < 8; ++t) {
    for (int i = 0; i < 4; ++i) {
      std::string name = "dir/w" + std::to_string(t) + "-" + std::to_string(i);
      Result<std::string> back = ReadAll(top(), name);
      CONF_ASSERT_OK(back) << " " << name;
      EXPECT_TRUE(*back == PatternBytes(65536 + t * 1000 + i, t * 10 + i)) << name;
    }
  }
  Result<std::vector<DirEntry>> listed = top().list(SeedTree::kDir);
  CONF_ASSERT_OK(listed);
  EXPECT_EQ(listed->size(), 2u + 32u);
}

}  // namespace hfvfs::conformance
