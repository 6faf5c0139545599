// SigV4 against the example requests of AWS's S3 documentation ("Signature Calculations for
// the Authorization Header: Transferring Payload in a Single Chunk") and the get-vanilla case
// of the SigV4 test suite. The expected signatures are AWS's published ones.
#include "sigv4.h"

#include <gtest/gtest.h>

namespace hfvfs::s3 {
namespace {

constexpr const char* kAccessKey = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kSecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

SigningInput ExampleBucket(std::string method, std::string uri) {
  SigningInput in;
  in.method = std::move(method);
  in.canonical_uri = std::move(uri);
  in.region = "us-east-1";
  in.amz_date = "20130524T000000Z";
  in.headers = {{"Host", "examplebucket.s3.amazonaws.com"}, {"x-amz-date", "20130524T000000Z"}};
  in.payload_hash = std::string(kEmptyPayloadSha256);
  in.headers.emplace_back("x-amz-content-sha256", in.payload_hash);
  return in;
}

std::string SignatureOf(const std::string& authorization) {
  return authorization.substr(authorization.find("Signature=") + 10);
}

TEST(SigV4, GetObjectWithRange) {
  SigningInput in = ExampleBucket("GET", "/test.txt");
  in.headers.emplace_back("Range", "bytes=0-9");
  std::string signed_headers;
  std::string canonical = CanonicalRequest(in, &signed_headers);
  EXPECT_EQ(signed_headers, "host;range;x-amz-content-sha256;x-amz-date");
  EXPECT_EQ(canonical,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            "\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(StringToSign(in, canonical),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(AuthorizationHeader(kAccessKey, kSecretKey, in),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature="
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, PutObjectWithSignedPayload) {
  std::string body = "Welcome to Amazon S3.";
  SigningInput in = ExampleBucket("PUT", "/" + UriEncode("test$file.text", false));
  EXPECT_EQ(in.canonical_uri, "/test%24file.text");
  in.payload_hash = Sha256Hex(body);
  EXPECT_EQ(in.payload_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  in.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                {"x-amz-date", "20130524T000000Z"},
                {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                {"x-amz-content-sha256", in.payload_hash}};
  EXPECT_EQ(SignatureOf(AuthorizationHeader(kAccessKey, kSecretKey, in)),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4, GetBucketLifecycleHasEmptyQueryValue) {
  SigningInput in = ExampleBucket("GET", "/");
  in.query = {{"lifecycle", ""}};
  EXPECT_EQ(CanonicalQueryString(in.query), "lifecycle=");
  EXPECT_EQ(SignatureOf(AuthorizationHeader(kAccessKey, kSecretKey, in)),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(SigV4, ListObjectsQueryIsSorted) {
  SigningInput in = ExampleBucket("GET", "/");
  in.query = {{"prefix", "J"}, {"max-keys", "2"}};
  EXPECT_EQ(CanonicalQueryString(in.query), "max-keys=2&prefix=J");
  EXPECT_EQ(SignatureOf(AuthorizationHeader(kAccessKey, kSecretKey, in)),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4, TestSuiteGetVanilla) {
  SigningInput in;
  in.method = "GET";
  in.canonical_uri = "/";
  in.region = "us-east-1";
  in.service = "service";
  in.amz_date = "20150830T123600Z";
  in.headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
  in.payload_hash = std::string(kEmptyPayloadSha256);
  EXPECT_EQ(AuthorizationHeader("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", in),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,"
            "SignedHeaders=host;x-amz-date,Signature="
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, SecretNeverInHeader) {
  SigningInput in = ExampleBucket("GET", "/x");
  std::string auth = AuthorizationHeader(kAccessKey, kSecretKey, in);
  EXPECT_EQ(auth.find(kSecretKey), std::string::npos);
}

TEST(SigV4, UriEncodeKeys) {
  EXPECT_EQ(UriEncode("a b+c/ü~_.-", false), "a%20b%2Bc/%C3%BC~_.-");
  EXPECT_EQ(UriEncode("a/b", true), "a%2Fb");
  EXPECT_EQ(UriEncode("x=y&z*", true), "x%3Dy%26z%2A");
  EXPECT_EQ(CanonicalQueryString({{"prefix", "dir one/"}, {"delimiter", "/"}}),
            "delimiter=%2F&prefix=dir%20one%2F");
}

TEST(SigV4, HeaderValuesAreTrimmedAndNamesLowered) {
  SigningInput in;
  in.method = "GET";
  in.canonical_uri = "/";
  in.headers = {{"X-Amz-Meta-A", "  two   words  "}, {"HOST", "h"}};
  in.payload_hash = "p";
  std::string names;
  EXPECT_EQ(CanonicalRequest(in, &names),
            "GET\n/\n\nhost:h\nx-amz-meta-a:two words\n\n"
            "host;x-amz-meta-a\np");
  EXPECT_EQ(names, "host;x-amz-meta-a");
}

TEST(SigV4, AmzDateAndBase64) {
  EXPECT_EQ(AmzDate(1369353600), "20130524T000000Z");
  EXPECT_EQ(Base64("hello"), "aGVsbG8=");
}

}  // namespace
}  // namespace hfvfs::s3
