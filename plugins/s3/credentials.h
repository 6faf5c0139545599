// File: credentials.h
//
// Where the s3 layer's keys come from. A pair (key id + secret) is taken whole or not at all;
// secrets are never logged or put in messages (`source` says where they came from, never what
// they are).
//
// Order:
//   1. the spec names `credentials_file` or `profile`: that profile of that file (default file
//      $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, default profile "default");
//   2. B2_APPLICATION_KEY_ID + B2_APPLICATION_KEY;
//   3. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
//   4. profile $AWS_PROFILE (or "default") of the default file, when the file exists.
// Nothing found is EACCES naming what was looked at.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "hfvfs/result.h"

namespace hfvfs::s3 {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // empty unless temporary credentials
  std::string source;         // "environment (AWS_ACCESS_KEY_ID)", "file ~/x [profile p]"
};

struct CredentialOptions {
  std::string credentials_file;  // from the spec; empty = not given
  std::string profile;           // from the spec; empty = not given
};

// Reads the environment through `getenv` (tests pass their own) and files from disk.
using GetEnv = std::function<std::optional<std::string>(std::string_view)>;
Result<Credentials> ResolveCredentials(const CredentialOptions& options, const GetEnv& getenv);
Result<Credentials> ResolveCredentials(const CredentialOptions& options);

// One profile of an AWS-style INI credentials file: aws_access_key_id, aws_secret_access_key,
// aws_session_token. ENOENT when the file or the profile is missing; EINVAL when the profile
// lacks half of the pair (the message names the file and profile, never a value).
Result<Credentials> ReadCredentialsFile(const std::string& path, const std::string& profile);

}  // namespace hfvfs::s3
