// The crypt plugin: builds a CryptLayer from its [[layer]] table.
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "crypt_aead.h"
#include "crypt_key.h"
#include "crypt_layer.h"
#include "hfvfs/plugin.h"

namespace {

using hfvfs::Err;
using hfvfs::Result;
namespace crypt = hfvfs::crypt;

Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  hfvfs::ConfigView& cfg = args.config;
  if (!args.lower) {
    return Err(EINVAL, cfg.where() + ": crypt wraps another layer; put a source below it");
  }
  if (!crypt::SodiumReady()) return Err(EIO, "crypt: libsodium failed to initialise");
  HFVFS_ASSIGN_OR_RETURN(std::string key_file, cfg.get_path("key_file", ""));
  HFVFS_ASSIGN_OR_RETURN(std::string key_env, cfg.get_string("key_env", "HFVFS_CRYPT_KEY"));
  HFVFS_ASSIGN_OR_RETURN(std::string names,
                         cfg.get_enum("name_encoding", "base64url", {"base64url", "base32"}));
  HFVFS_ASSIGN_OR_RETURN(
      std::string plaintext,
      cfg.get_enum("plaintext_files", "read-only", {"hidden", "read-only", "read-write"}));
  HFVFS_ASSIGN_OR_RETURN(int64_t threads, cfg.get_int("threads", 0));
  if (threads < 0 || threads > 64) {
    return Err(EINVAL, cfg.where("threads") + ": expected 0 (one per core) to 64");
  }
  crypt::CryptOptions options;
  options.names =
      names == "base32" ? crypt::NameEncoding::kBase32 : crypt::NameEncoding::kBase64Url;
  options.plaintext = plaintext == "hidden"       ? crypt::PlaintextFiles::kHidden
                      : plaintext == "read-write" ? crypt::PlaintextFiles::kReadWrite
                                                  : crypt::PlaintextFiles::kReadOnly;
  options.threads = static_cast<unsigned>(threads);

  Result<crypt::Key> key = Err(EINVAL, "");
  if (!key_file.empty()) {
    std::string warning;
    key = crypt::LoadKeyFile(key_file, warning);
    if (!warning.empty()) spdlog::warn("{}", warning);
    if (!key) return key.error().With(cfg.where("key_file"));
  } else {
    const char* text = key_env.empty() ? nullptr : std::getenv(key_env.c_str());
    if (!text) {
      return Err(EINVAL, cfg.where() +
                             ": crypt needs a key: set key_file, or put 64 hex "
                             "characters in the environment variable " +
                             (key_env.empty() ? std::string("named by key_env") : key_env));
    }
    key = crypt::ParseHexKey(text, "environment variable " + key_env);
    if (!key) return key.error().With(cfg.where("key_env"));
  }
  auto layer = std::make_unique<crypt::CryptLayer>(args.lower, *key, options);
  sodium_memzero(key->data(), key->size());
  spdlog::info("crypt: records sealed and opened with XChaCha20-Poly1305 by {}",
               crypt::AeadEngine());
  return std::unique_ptr<hfvfs::Layer>(std::move(layer));
}

const hfvfs::OptionInfo kOptions[] = {
    {"key_file", "path", "",
     "file holding the master key: 32 raw bytes or 64 hex characters (`hfvfs keygen FILE`)"},
    {"key_env", "string", "HFVFS_CRYPT_KEY",
     "environment variable holding the key as 64 hex characters, used when key_file is unset"},
    {"name_encoding", "enum(base64url|base32)", "base64url",
     "how encrypted names are written; base32 for case-insensitive stores"},
    {"plaintext_files", "enum(hidden|read-only|read-write)", "read-only",
     "what the mount shows of the files beside .enc/"},
    {"threads", "int", "0", "workers sealing and opening records of large I/O; 0 = one per core"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kWrapper, "crypt", "0.1.0",
             "client-side encryption of contents and names (libsodium)", kOptions, Create)
