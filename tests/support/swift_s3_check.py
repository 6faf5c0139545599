#!/usr/bin/python3
"""Checks the loopback S3 server with boto3, an independent client: it must behave like S3
where hfvfs's s3 layer relies on it (signatures verified, multipart ETags of the "-N" form,
suffix ranges, If-Match, delimiter listings with continuation) and its fault injection
(proxy-stop / proxy-start) must work."""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

STATE = None


def client(access=None, secret=None, style="path"):
    return boto3.client(
        "s3", endpoint_url=STATE["endpoint"], region_name=STATE["region"],
        aws_access_key_id=access or STATE["access_key"],
        aws_secret_access_key=secret or STATE["secret_key"],
        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1},
                      connect_timeout=3, read_timeout=30))


class SwiftS3Check(unittest.TestCase):
    bucket = f"check-{os.getpid()}"

    @classmethod
    def setUpClass(cls):
        cls.s3 = client()
        cls.s3.create_bucket(Bucket=cls.bucket)

    def test_wrong_secret_is_refused(self):
        with self.assertRaises(ClientError) as e:
            client(secret="wrong").list_objects_v2(Bucket=self.bucket)
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)

    def test_multipart_etag_and_suffix_range(self):
        part = os.urandom(5 << 20)
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key="mp.bin")
        etags = []
        for n, body in ((1, part), (2, b"tail")):
            r = self.s3.upload_part(Bucket=self.bucket, Key="mp.bin", PartNumber=n,
                                    UploadId=up["UploadId"], Body=body)
            etags.append(r["ETag"])
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key="mp.bin", UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e}
                                       for i, e in enumerate(etags)]})
        want = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest()
        head = self.s3.head_object(Bucket=self.bucket, Key="mp.bin")
        self.assertEqual(head["ETag"], f'"{want}-2"')
        self.assertEqual(head["ContentLength"], len(part) + 4)
        tail = self.s3.get_object(Bucket=self.bucket, Key="mp.bin", Range="bytes=-10")
        self.assertEqual(tail["Body"].read(), part[-6:] + b"tail")
        with self.assertRaises(ClientError) as e:
            self.s3.get_object(Bucket=self.bucket, Key="mp.bin", IfMatch='"0000"')
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)

    def test_delimiter_listing_with_continuation(self):
        for k in ("d/a/x", "d/b/y", "d/c", "d/e/f/g"):
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"1")
        prefixes, keys, token = [], [], None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            r = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="d/", Delimiter="/",
                                        MaxKeys=1, **kw)
            prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
            keys += [o["Key"] for o in r.get("Contents", [])]
            if not r["IsTruncated"]:
                break
            token = r["NextContinuationToken"]
        self.assertEqual(prefixes, ["d/a/", "d/b/", "d/e/"])
        self.assertEqual(keys, ["d/c"])

    def test_virtual_host_addressing(self):
        # boto3 builds http://<bucket>.s3.localhost:<port>; map that name to 127.0.0.1 here.
        import socket
        real = socket.getaddrinfo

        def fake(host, *a, **k):
            if host.endswith("." + STATE["storage_domain"]):
                host = "127.0.0.1"
            return real(host, *a, **k)
        socket.getaddrinfo = fake
        try:
            vs = boto3.client(
                "s3", endpoint_url=f"http://{STATE['storage_domain']}:{STATE['ports']['proxy']}",
                region_name=STATE["region"], aws_access_key_id=STATE["access_key"],
                aws_secret_access_key=STATE["secret_key"],
                config=Config(s3={"addressing_style": "virtual"}))
            vs.put_object(Bucket=self.bucket, Key="vhost key+ü", Body=b"v")
            self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="vhost key+ü")
                             ["Body"].read(), b"v")
        finally:
            socket.getaddrinfo = real

    def test_proxy_stop_and_start(self):
        # On a private server: other tests share the fixture's server and must never meet its
        # proxy stopped.
        launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "swift_s3.py")
        folder = tempfile.mkdtemp(prefix="hfvfs-swift-check-")
        subprocess.run([sys.executable, launcher, "start", "--dir", folder, "--watch-pid",
                        str(os.getpid())], check=True, stdout=subprocess.DEVNULL)
        try:
            with open(os.path.join(folder, "state.json")) as f:
                state = json.load(f)

            def private():
                return boto3.client(
                    "s3", endpoint_url=state["endpoint"], region_name=state["region"],
                    aws_access_key_id=state["access_key"],
                    aws_secret_access_key=state["secret_key"],
                    config=Config(s3={"addressing_style": "path"},
                                  retries={"max_attempts": 1}, connect_timeout=3,
                                  read_timeout=30))
            private().create_bucket(Bucket="fault")
            private().put_object(Bucket="fault", Key="persist", Body=b"p")
            subprocess.run([sys.executable, launcher, "proxy-stop", "--dir", folder], check=True)
            try:
                with self.assertRaises(EndpointConnectionError):
                    private().get_object(Bucket="fault", Key="persist")
            finally:
                subprocess.run([sys.executable, launcher, "proxy-start", "--dir", folder],
                               check=True)
            self.assertEqual(private().get_object(Bucket="fault", Key="persist")["Body"].read(),
                             b"p")
        finally:
            subprocess.run([sys.executable, launcher, "stop", "--dir", folder])
            shutil.rmtree(folder, ignore_errors=True)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    args, rest = parser.parse_known_args()
    with open(args.state) as f:
        STATE = json.load(f)
    warnings.simplefilter("ignore", ResourceWarning)
    unittest.main(argv=[sys.argv[0], "-v"] + rest)
