// The layer conformance suite (tests/conformance) over crypt on the `local` layer.
#include <fcntl.h>

#include <memory>

#include "conformance.h"
#include "crypt_layer.h"
#include "local_layer.h"

namespace hfvfs::conformance {
namespace {

crypt::Key TestKey() {
  crypt::Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x5a ^ i);
  return k;
}

Result<std::shared_ptr<Layer>> CryptOver(const std::string& dir, crypt::CryptOptions options) {
  HFVFS_ASSIGN_OR_RETURN(auto local, local::LocalLayer::Open(dir, {}));
  return std::shared_ptr<Layer>(std::make_shared<crypt::CryptLayer>(
      std::shared_ptr<Layer>(std::move(local)), TestKey(), options));
}

StackConfig CryptStack(std::string name, crypt::CryptOptions options) {
  StackConfig config;
  config.name = std::move(name);
  config.cannot = {};  // symlinks included: their targets are sealed (docs/crypt-format.md)
  config.make = [options](const SeedTree& seed) -> Result<StackUnderTest> {
    auto dir = std::make_shared<TempDir>();
    HFVFS_ASSIGN_OR_RETURN(std::shared_ptr<Layer> top, CryptOver(dir->path(), options));
    HFVFS_RETURN_IF_ERROR(top->start());
    HFVFS_RETURN_IF_ERROR(seed.WriteThrough(*top));
    // The store holds ciphertext: "the store" is reached through a second, independent crypt
    // instance with the same key over the same folder (another mount of the same bucket).
    HFVFS_ASSIGN_OR_RETURN(std::shared_ptr<Layer> other, CryptOver(dir->path(), options));
    StackUnderTest stack;
    stack.top = top;
    stack.backing.read = [other](std::string_view path) -> Result<std::string> {
      HFVFS_ASSIGN_OR_RETURN(auto f, other->open(path, O_RDONLY));
      HFVFS_ASSIGN_OR_RETURN(Attr a, f->stat());
      std::string out(a.size, '\0');
      Result<size_t> n = f->read(0, {reinterpret_cast<std::byte*>(out.data()), out.size()});
      (void)f->close();
      if (!n) return n.error();
      out.resize(*n);
      return out;
    };
    stack.backing.write = [other](std::string_view path, std::string_view content) -> Status {
      HFVFS_ASSIGN_OR_RETURN(auto f, other->create(path, 0644, O_WRONLY | O_TRUNC));
      Result<size_t> n =
          f->write(0, {reinterpret_cast<const std::byte*>(content.data()), content.size()});
      if (!n) return n.error();
      HFVFS_RETURN_IF_ERROR(f->flush());
      return f->close();
    };
    stack.keep_alive =
        std::make_shared<std::pair<std::shared_ptr<TempDir>, std::shared_ptr<Layer>>>(dir, other);
    return stack;
  };
  return config;
}

std::vector<StackConfig> CryptStacks() {
  crypt::CryptOptions base32;
  base32.names = crypt::NameEncoding::kBase32;
  return {CryptStack("CryptOverLocal", {}), CryptStack("CryptOverLocalBase32Names", base32)};
}

INSTANTIATE_TEST_SUITE_P(Crypt, LayerConformance, ::testing::ValuesIn(CryptStacks()),
                         ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
