#!/usr/bin/python3
"""boto3 as the independent client of hfvfs's s3 tests. Reads the server from a state.json
(tests/support/swift_s3.py) and prints one JSON document per command:

  s3_boto3.py STATE create-bucket BUCKET
  s3_boto3.py STATE put BUCKET KEY FILE         -> {"etag": ...}
  s3_boto3.py STATE put-many BUCKET PREFIX N     -> {"count": N}   (keys PREFIX%05d, 8 threads)
  s3_boto3.py STATE get BUCKET KEY              -> {"size", "md5", "etag"}
  s3_boto3.py STATE head BUCKET KEY             -> {"size", "etag"} or {"missing": true}
  s3_boto3.py STATE list BUCKET PREFIX          -> {"keys": [...]} (flat, all pages)
  s3_boto3.py STATE uploads BUCKET              -> {"uploads": [keys of unfinished multipart uploads]}
Keys are passed as UTF-8 arguments.
"""
import concurrent.futures
import hashlib
import json
import sys

import boto3
from botocore.config import Config


def main():
    state = json.load(open(sys.argv[1]))
    cmd, args = sys.argv[2], sys.argv[3:]
    s3 = boto3.client("s3", endpoint_url=state["endpoint"], region_name=state["region"],
                      aws_access_key_id=state["access_key"],
                      aws_secret_access_key=state["secret_key"],
                      config=Config(s3={"addressing_style": "path"},
                                    max_pool_connections=16))
    out = {}
    if cmd == "create-bucket":
        s3.create_bucket(Bucket=args[0])
    elif cmd == "put":
        with open(args[2], "rb") as f:
            out["etag"] = s3.put_object(Bucket=args[0], Key=args[1], Body=f.read())["ETag"]
    elif cmd == "put-many":
        bucket, prefix, n = args[0], args[1], int(args[2])

        def put(i):
            s3.put_object(Bucket=bucket, Key=f"{prefix}{i:05d}", Body=f"object {i}\n".encode())
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(n)))
        out["count"] = n
    elif cmd == "get":
        r = s3.get_object(Bucket=args[0], Key=args[1])
        body = r["Body"].read()
        out = {"size": len(body), "md5": hashlib.md5(body).hexdigest(), "etag": r["ETag"]}
    elif cmd == "head":
        try:
            r = s3.head_object(Bucket=args[0], Key=args[1])
            out = {"size": r["ContentLength"], "etag": r["ETag"]}
        except s3.exceptions.ClientError as e:
            if e.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
                raise
            out = {"missing": True}
    elif cmd == "list":
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0],
                                                                 Prefix=args[1]):
            keys += [o["Key"] for o in page.get("Contents", [])]
        out["keys"] = keys
    elif cmd == "uploads":
        r = s3.list_multipart_uploads(Bucket=args[0])
        out["uploads"] = [u["Key"] for u in r.get("Uploads", [])]
    else:
        sys.exit(f"unknown command {cmd}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
