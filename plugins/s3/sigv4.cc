#include "sigv4.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace hfvfs::s3 {
namespace {

void EnsureSodium() {
  // sodium_init is thread-safe and idempotent; it returns 1 when already initialised.
  static const int once = sodium_init();
  (void)once;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Header values: leading and trailing spaces removed, inner runs of spaces folded to one.
std::string TrimValue(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string Hex(const uint8_t* data, size_t size) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  EnsureSodium();
  uint8_t digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  return Hex(digest, sizeof digest);
}

std::array<uint8_t, 32> HmacSha256(std::string_view key, std::string_view data) {
  EnsureSodium();
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const uint8_t*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  std::array<uint8_t, 32> out{};
  crypto_auth_hmacsha256_final(&state, out.data());
  sodium_memzero(&state, sizeof state);
  return out;
}

std::string Base64(std::string_view data) {
  EnsureSodium();
  std::string out(sodium_base64_ENCODED_LEN(data.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const uint8_t*>(data.data()),
                    data.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::string UriEncode(std::string_view text, bool encode_slash) {
  static const char* kDigits = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3 / 2);
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

std::string AmzDate(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string CanonicalQueryString(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(UriEncode(name, true), UriEncode(value, true));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

std::string CanonicalRequest(const SigningInput& in, std::string* signed_headers) {
  std::vector<std::pair<std::string, std::string>> headers;
  headers.reserve(in.headers.size());
  for (const auto& [name, value] : in.headers) headers.emplace_back(Lower(name), TrimValue(value));
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers;
  std::string names;
  for (size_t i = 0; i < headers.size(); ++i) {
    // Repeated headers are joined with commas, in order.
    if (i > 0 && headers[i].first == headers[i - 1].first) {
      canonical_headers.pop_back();
      canonical_headers += "," + headers[i].second + "\n";
      continue;
    }
    canonical_headers += headers[i].first + ":" + headers[i].second + "\n";
    if (!names.empty()) names.push_back(';');
    names += headers[i].first;
  }
  if (signed_headers) *signed_headers = names;
  std::string out;
  out += in.method + "\n";
  out += (in.canonical_uri.empty() ? "/" : in.canonical_uri) + "\n";
  out += CanonicalQueryString(in.query) + "\n";
  out += canonical_headers + "\n";
  out += names + "\n";
  out += in.payload_hash;
  return out;
}

static std::string Scope(const SigningInput& in) {
  return in.amz_date.substr(0, 8) + "/" + in.region + "/" + in.service + "/aws4_request";
}

std::string StringToSign(const SigningInput& in, std::string_view canonical_request) {
  return "AWS4-HMAC-SHA256\n" + in.amz_date + "\n" + Scope(in) + "\n" +
         Sha256Hex(canonical_request);
}

std::string Signature(std::string_view secret_key, const SigningInput& in,
                      std::string_view string_to_sign) {
  auto view = [](const std::array<uint8_t, 32>& a) {
    return std::string_view(reinterpret_cast<const char*>(a.data()), a.size());
  };
  std::string first_key = "AWS4" + std::string(secret_key);
  auto date_key = HmacSha256(first_key, in.amz_date.substr(0, 8));
  sodium_memzero(first_key.data(), first_key.size());
  auto region_key = HmacSha256(view(date_key), in.region);
  auto service_key = HmacSha256(view(region_key), in.service);
  auto signing_key = HmacSha256(view(service_key), "aws4_request");
  auto signature = HmacSha256(view(signing_key), string_to_sign);
  return Hex(signature.data(), signature.size());
}

std::string AuthorizationHeader(std::string_view access_key, std::string_view secret_key,
                                const SigningInput& in) {
  std::string signed_headers;
  std::string canonical = CanonicalRequest(in, &signed_headers);
  std::string to_sign = StringToSign(in, canonical);
  return "AWS4-HMAC-SHA256 Credential=" + std::string(access_key) + "/" + Scope(in) +
         ",SignedHeaders=" + signed_headers + ",Signature=" + Signature(secret_key, in, to_sign);
}

}  // namespace hfvfs::s3
