// File: crypt_key.h
//
// The crypt layer's master key: loading it from a key file or an environment variable, and
// generating a new key file (`hfvfs keygen FILE`). A key file holds exactly 32 raw bytes or 64
// hexadecimal characters (surrounding whitespace ignored). Key bytes never appear in messages.
#pragma once

#include <string>
#include <string_view>

#include "crypt_format.h"
#include "hfvfs/result.h"

namespace hfvfs::crypt {

// Reads the master key from `path`. EINVAL when the file does not hold a key of the right
// length (the message gives the length found, never the content). When the file is readable
// by group or others, `warning` receives a message saying so (the key is still returned).
Result<Key> LoadKeyFile(const std::string& path, std::string& warning);

// Parses 64 hex characters (surrounding whitespace ignored), as held by an environment
// variable. `where` names the source in messages.
Result<Key> ParseHexKey(std::string_view text, std::string_view where);

// Writes a new random key to `path` as 64 hex characters and a newline, with mode 0600. Refuses
// (EEXIST) to replace an existing file. This is `hfvfs keygen FILE`.
Status GenerateKeyFile(const std::string& path);

}  // namespace hfvfs::crypt
