// File: sigv4.h
//
// AWS Signature Version 4 for S3 requests, as pure functions of their inputs (no clock, no
// I/O), so they are tested against AWS's documented example vectors. SHA-256 and HMAC come from
// libsodium.
//
// Encoding contract: `canonical_uri` is the request path exactly as sent on the wire, already
// encoded with UriEncode(key, /*encode_slash=*/false) per segment; query names and values are
// given raw and encoded here with UriEncode(..., true), as S3 wants them.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hfvfs::s3 {

// The value of x-amz-content-sha256 for a body that is not hashed (allowed by S3 for
// header-signed requests). Hashing a 1 GiB upload would cost more CPU than sending it.
inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
// SHA-256 of the empty string.
inline constexpr std::string_view kEmptyPayloadSha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string Sha256Hex(std::string_view data);
std::array<uint8_t, 32> HmacSha256(std::string_view key, std::string_view data);
std::string Hex(const uint8_t* data, size_t size);
std::string Base64(std::string_view data);

// RFC 3986 percent-encoding as SigV4 defines it: unreserved characters (A-Z a-z 0-9 - . _ ~)
// stay, '/' stays unless `encode_slash`, every other byte becomes %XX (upper-case hex).
std::string UriEncode(std::string_view text, bool encode_slash);

// "20130524T000000Z" for a UTC time.
std::string AmzDate(std::time_t t);

struct SigningInput {
  std::string method;         // "GET"
  std::string canonical_uri;  // "/bucket/key%20name" (encoded, see above); "/" at the root
  std::vector<std::pair<std::string, std::string>> query;    // raw names and values
  std::vector<std::pair<std::string, std::string>> headers;  // every header to sign, with host
  std::string payload_hash;  // hex SHA-256 of the body, or kUnsignedPayload
  std::string region;        // "us-east-1"
  std::string service = "s3";
  std::string amz_date;  // "20130524T000000Z", also sent as x-amz-date
};

// "a=1&b=x%2Fy": names and values encoded, sorted by encoded name then value.
std::string CanonicalQueryString(const std::vector<std::pair<std::string, std::string>>& query);

// The canonical request; `signed_headers` receives "host;range;x-amz-date".
std::string CanonicalRequest(const SigningInput& in, std::string* signed_headers);

// "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of canonical request>".
std::string StringToSign(const SigningInput& in, std::string_view canonical_request);

// Hex HMAC of the string to sign under the key derived from `secret_key`.
std::string Signature(std::string_view secret_key, const SigningInput& in,
                      std::string_view string_to_sign);

// The whole Authorization header value. The secret only enters the HMAC; it never appears in
// the result.
std::string AuthorizationHeader(std::string_view access_key, std::string_view secret_key,
                                const SigningInput& in);

}  // namespace hfvfs::s3
