#include "credentials.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "hfvfs/units.h"

namespace hfvfs::s3 {
namespace {

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::optional<std::string> NonEmpty(const GetEnv& getenv, std::string_view name) {
  std::optional<std::string> v = getenv(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

std::string DefaultCredentialsFile(const GetEnv& getenv) {
  if (auto f = NonEmpty(getenv, "AWS_SHARED_CREDENTIALS_FILE")) return ExpandPath(*f);
  if (auto home = NonEmpty(getenv, "HOME")) return *home + "/.aws/credentials";
  return ExpandPath("~/.aws/credentials");
}

}  // namespace

Result<Credentials> ReadCredentialsFile(const std::string& path, const std::string& profile) {
  std::ifstream in(path);
  if (!in) return Err(ENOENT, "credentials file " + path + " cannot be read");
  std::string line;
  bool in_profile = false;
  bool found = false;
  Credentials c;
  while (std::getline(in, line)) {
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      std::string name = Trim(std::string_view(t).substr(1, t.size() - 2));
      // ~/.aws/config spells sections "profile x"; accept it in credentials files too.
      if (name.rfind("profile ", 0) == 0) name = Trim(std::string_view(name).substr(8));
      in_profile = name == profile;
      found = found || in_profile;
      continue;
    }
    if (!in_profile) continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = Trim(std::string_view(t).substr(0, eq));
    std::string value = Trim(std::string_view(t).substr(eq + 1));
    if (key == "aws_access_key_id") c.access_key = value;
    if (key == "aws_secret_access_key") c.secret_key = value;
    if (key == "aws_session_token") c.session_token = value;
  }
  if (!found) return Err(ENOENT, "credentials file " + path + " has no profile [" + profile + "]");
  if (c.access_key.empty() || c.secret_key.empty()) {
    return Err(EINVAL, "credentials file " + path + " profile [" + profile +
                           "] needs both aws_access_key_id and aws_secret_access_key");
  }
  c.source = "file " + path + " [profile " + profile + "]";
  return c;
}

Result<Credentials> ResolveCredentials(const CredentialOptions& options, const GetEnv& getenv) {
  if (!options.credentials_file.empty() || !options.profile.empty()) {
    std::string file = options.credentials_file.empty() ? DefaultCredentialsFile(getenv)
                                                        : options.credentials_file;
    std::string profile = options.profile.empty() ? "default" : options.profile;
    Result<Credentials> c = ReadCredentialsFile(file, profile);
    if (!c) return Err(EACCES, "s3 credentials: " + c.error().message());
    return c;
  }
  std::string skipped;
  auto b2_id = NonEmpty(getenv, "B2_APPLICATION_KEY_ID");
  auto b2_key = NonEmpty(getenv, "B2_APPLICATION_KEY");
  if (b2_id && b2_key) {
    return Credentials{*b2_id, *b2_key, "", "environment (B2_APPLICATION_KEY_ID)"};
  }
  if (b2_id || b2_key) skipped += " B2_APPLICATION_KEY_ID/B2_APPLICATION_KEY (only one is set);";
  auto aws_id = NonEmpty(getenv, "AWS_ACCESS_KEY_ID");
  auto aws_key = NonEmpty(getenv, "AWS_SECRET_ACCESS_KEY");
  if (aws_id && aws_key) {
    return Credentials{*aws_id, *aws_key, NonEmpty(getenv, "AWS_SESSION_TOKEN").value_or(""),
                       "environment (AWS_ACCESS_KEY_ID)"};
  }
  if (aws_id || aws_key) {
    skipped += " AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (only one is set);";
  }
  std::string file = DefaultCredentialsFile(getenv);
  std::string profile = NonEmpty(getenv, "AWS_PROFILE").value_or("default");
  Result<Credentials> c = ReadCredentialsFile(file, profile);
  if (c) return c;
  return Err(EACCES,
             "s3: no credentials found: set B2_APPLICATION_KEY_ID + B2_APPLICATION_KEY "
             "or AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or name `credentials_file` / "
             "`profile` in the spec (" +
                 c.error().message() + ")" + (skipped.empty() ? "" : "; ignored:" + skipped));
}

Result<Credentials> ResolveCredentials(const CredentialOptions& options) {
  return ResolveCredentials(options, [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace hfvfs::s3
