#!/usr/bin/python3
"""Seeds the benchmark bucket with boto3 (an independent client): big.dat (1 GiB, copied from the
Hub fixture so every contender reads the same bytes) and tree/ with 10,000 small objects.

    s3_seed.py ENDPOINT BUCKET BIG_FILE      (credentials from AWS_ACCESS_KEY_ID/SECRET)
Skips what is already there.
"""
import concurrent.futures
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def main():
    endpoint, bucket, big = sys.argv[1], sys.argv[2], sys.argv[3]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    have = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}
    if "big.dat" not in have:
        if not big or not os.path.exists(big):
            with open("/tmp/hfvfs-bench-big.dat", "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(1024):
                    f.write(block)
            big = "/tmp/hfvfs-bench-big.dat"
        s3.upload_file(big, bucket, "big.dat",
                       Config=TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4))
    keys = [f"tree/d{i // 100:03d}/f{i:05d}.txt" for i in range(10000)]
    todo = [k for k in keys if k not in have]

    def put(k):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, todo))


if __name__ == "__main__":
    main()
