#!/usr/bin/python3
"""An independent reader of the hfvfs crypt format (docs/crypt-format.md).

It shares no code with the C++ layer: BLAKE2b comes from Python's hashlib, ChaCha20 and
ChaCha20-Poly1305 from python3-cryptography (OpenSSL), and HChaCha20 is written out below.

    crypt_check.py vectors docs/crypt-format.md
        recompute every test vector of the document from its inputs; exit 1 on a mismatch
    crypt_check.py decrypt (--key-file F | --key-env VAR) [--names base64url|base32] ROOT
        walk ROOT/.enc, authenticate and decrypt every name and file, and print one line per
        entry: "d <path>", "f <path> <size> <sha256>" or "l <path> -> <target>"; exit 1 when anything fails to
        authenticate (entries of other keys are skipped, as the layer skips them)
"""

import argparse
import base64
import hashlib
import hmac
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.exceptions import InvalidTag

MAGIC = b"HFVC"
VERSION = 1
ALG_XCHACHA20POLY1305 = 1
HEADER = 64
CHUNK = 65536
OVERHEAD = 40
RECORD = CHUNK + OVERHEAD
ENC_DIR = ".enc"
MAX_REGION = {"base64url": 191 - 16, "base32": 159 - 16}
MAX_LINK_TARGET = 3031


# ---- primitives ----

def _rotl(v, n):
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def hchacha20(key, nonce16):
    """HChaCha20: the ChaCha20 core without the final addition, words 0-3 and 12-15 out."""
    s = list(struct.unpack("<4I", b"expand 32-byte k")) + list(struct.unpack("<8I", key)) + \
        list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha20_xor(key, nonce24, data):
    sub = hchacha20(key, nonce24[:16])
    # 64-bit block counter 0, then the last 8 bytes of the nonce.
    enc = Cipher(algorithms.ChaCha20(sub, b"\0" * 8 + nonce24[16:]), mode=None).encryptor()
    return enc.update(data) + enc.finalize()


def xchacha20poly1305_seal(key, nonce24, plain, aad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\0" * 4 + nonce24[16:], plain, aad)


def xchacha20poly1305_open(key, nonce24, ct_and_tag, aad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\0" * 4 + nonce24[16:], ct_and_tag, aad)


def kdf(master, subkey_id, context=b"hfvfscr1"):
    return hashlib.blake2b(b"", digest_size=32, key=master,
                           salt=struct.pack("<Q", subkey_id) + b"\0" * 8,
                           person=context + b"\0" * 8).digest()


def mac128(key, person, data):
    return hashlib.blake2b(data, digest_size=16, key=key, person=person).digest()


# ---- format ----

class Keys:
    def __init__(self, master):
        self.content = kdf(master, 1)
        self.name_mac = kdf(master, 2)
        self.name_enc = kdf(master, 3)
        self.link = kdf(master, 4)


def file_keys(keys, file_id):
    both = hashlib.blake2b(file_id, digest_size=64, key=keys.content,
                           person=b"hfvfs-crypt-file").digest()
    return both[:32], both[32:]


def header_tag(header_key, header48, path):
    p = path.encode()
    return mac128(header_key, b"hfvfs-crypt-head", header48 + struct.pack("<I", len(p)) + p)


def encode_header(keys, file_id, path):
    _, hk = file_keys(keys, file_id)
    h = MAGIC + bytes([VERSION, ALG_XCHACHA20POLY1305]) + struct.pack("<HI", HEADER, CHUNK) + \
        b"\0" * 12 + file_id
    return h + header_tag(hk, h, path)


def record_aad(file_id, index, final):
    return MAGIC + bytes([VERSION, ALG_XCHACHA20POLY1305]) + file_id + \
        struct.pack("<QI", index, CHUNK) + bytes([1 if final else 0])


def plaintext_size(obj):
    if obj < HEADER + OVERHEAD:
        return None
    body = obj - HEADER - OVERHEAD
    full, rest = divmod(body, RECORD)
    if rest >= CHUNK:
        return None
    return full * CHUNK + rest


def b64_encode(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def b64_decode(s):
    try:
        b = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except Exception:
        return None
    return b if b64_encode(b) == s else None  # canonical form only


def b32_encode(b):
    return base64.b32encode(b).decode().rstrip("=").lower()


def b32_decode(s):
    if s != s.lower():
        return None
    try:
        b = base64.b32decode(s.upper() + "=" * (-len(s) % 8))
    except Exception:
        return None
    return b if b32_encode(b) == s else None


def padded_len(n, encoding):
    return min((n + 31) // 32 * 32, MAX_REGION[encoding])


def name_tag(keys, parent, padded):
    p = parent.encode()
    return mac128(keys.name_mac, b"hfvfs-crypt-name", struct.pack("<I", len(p)) + p + padded)


def encrypt_name(keys, encoding, parent, name):
    raw = name.encode()
    x = raw + b"\0" * (padded_len(len(raw), encoding) - len(raw))
    tag = name_tag(keys, parent, x)
    c = xchacha20_xor(keys.name_enc, tag + b"\0" * 8, x)
    return (b64_encode if encoding == "base64url" else b32_encode)(tag + c)


def decrypt_name(keys, encoding, parent, text):
    b = (b64_decode if encoding == "base64url" else b32_decode)(text)
    if b is None or len(b) <= 16 or len(b) - 16 > MAX_REGION[encoding]:
        return None
    tag, c = b[:16], b[16:]
    x = xchacha20_xor(keys.name_enc, tag + b"\0" * 8, c)
    if not hmac.compare_digest(name_tag(keys, parent, x), tag):
        return None
    raw = x.rstrip(b"\0")
    if not raw or padded_len(len(raw), encoding) != len(x) or b"/" in raw or b"\0" in raw:
        return None
    return raw.decode("utf-8", "surrogateescape")


def link_aad(path):
    p = path.encode()
    return b"HFVL" + bytes([VERSION]) + struct.pack("<I", len(p)) + p


def link_padded_len(n):
    return min((n + 31) // 32 * 32, MAX_LINK_TARGET)


def encrypt_link(keys, path, target, nonce):
    raw = target.encode()
    x = raw + b"\0" * (link_padded_len(len(raw)) - len(raw))
    return b64_encode(nonce + xchacha20poly1305_seal(keys.link, nonce, x, link_aad(path)))


def decrypt_link(keys, path, stored):
    """The plaintext target, or raises ValueError."""
    b = b64_decode(stored)
    if b is None or len(b) <= 24 + 16 or len(b) > 24 + MAX_LINK_TARGET + 16:
        raise ValueError("not an encrypted target")
    try:
        x = xchacha20poly1305_open(keys.link, b[:24], b[24:], link_aad(path))
    except InvalidTag:
        raise ValueError("symlink target failed authentication")
    raw = x.rstrip(b"\0")
    if not raw or link_padded_len(len(raw)) != len(x):
        raise ValueError("symlink target padding")
    return raw.decode("utf-8", "surrogateescape")


def decrypt_file(keys, data, path):
    """The plaintext of one object, or raises ValueError naming the failed check."""
    if len(data) < HEADER:
        raise ValueError("shorter than a header")
    h = data[:HEADER]
    if h[:4] != MAGIC or h[4] != VERSION or h[5] != ALG_XCHACHA20POLY1305:
        raise ValueError("not a version 1 container")
    hlen, chunk = struct.unpack("<HI", h[6:12])
    if hlen != HEADER or chunk != CHUNK or h[12:24] != b"\0" * 12:
        raise ValueError("unsupported header fields")
    file_id = h[24:48]
    rk, hk = file_keys(keys, file_id)
    if not hmac.compare_digest(header_tag(hk, h[:48], path), h[48:64]):
        raise ValueError("header tag (wrong key or contents of another file)")
    size = plaintext_size(len(data))
    if size is None:
        raise ValueError("object size %d is not a container size" % len(data))
    count = size // CHUNK + 1
    out = []
    for i in range(count):
        n = CHUNK if i + 1 < count else size % CHUNK
        rec = data[HEADER + i * RECORD: HEADER + i * RECORD + n + OVERHEAD]
        try:
            out.append(xchacha20poly1305_open(rk, rec[:24], rec[24:],
                                              record_aad(file_id, i, i + 1 == count)))
        except InvalidTag:
            raise ValueError("record %d failed authentication" % i)
    return b"".join(out)


# ---- commands ----

def vectors(doc_path):
    doc = {}
    inside = False
    for line in open(doc_path, encoding="utf-8"):
        if "<!-- vectors begin -->" in line:
            inside = True
        elif "<!-- vectors end -->" in line:
            inside = False
        elif inside and " = " in line:
            k, v = line.strip().split(" = ", 1)
            doc[k] = v
    master = bytes.fromhex(doc["master_key"])
    file_id = bytes.fromhex(doc["file_id"])
    keys = Keys(master)
    rk, hk = file_keys(keys, file_id)
    got = {
        "content_key": keys.content.hex(),
        "name_mac_key": keys.name_mac.hex(),
        "name_enc_key": keys.name_enc.hex(),
        "file_record_key": rk.hex(),
        "file_header_key": hk.hex(),
        "header": encode_header(keys, file_id, "docs/readme.txt").hex(),
        "name_b64_root_hello.txt": encrypt_name(keys, "base64url", "", "hello.txt"),
        "name_b64_docs_readme.txt": encrypt_name(keys, "base64url", "docs", "readme.txt"),
        "name_b32_docs_readme.txt": encrypt_name(keys, "base32", "docs", "readme.txt"),
        "name_b64_a/b_x40": encrypt_name(keys, "base64url", "a/b", "x" * 40),
        "link_key": keys.link.hex(),
        "link_docs/latest": encrypt_link(keys, "docs/latest", "../data/v1.bin",
                                         bytes(range(0xc0, 0xd8))),
    }
    nonce = bytes(range(0x80, 0x98))
    got["record_hello_final_0"] = (nonce + xchacha20poly1305_seal(
        rk, nonce, b"hello", record_aad(file_id, 0, True))).hex()
    nonce2 = bytes(range(0xa0, 0xb8))
    chunk = bytes(i % 256 for i in range(CHUNK))
    rec = nonce2 + xchacha20poly1305_seal(rk, nonce2, chunk, record_aad(file_id, 1, False))
    got["record_counting_1_sha256"] = hashlib.sha256(rec).hexdigest()
    # Reading back what the document shows.
    assert decrypt_name(keys, "base64url", "docs", doc["name_b64_docs_readme.txt"]) == "readme.txt"
    assert decrypt_name(keys, "base64url", "", doc["name_b64_docs_readme.txt"]) is None
    assert decrypt_name(keys, "base32", "docs", doc["name_b32_docs_readme.txt"]) == "readme.txt"
    assert decrypt_link(keys, "docs/latest", doc["link_docs/latest"]) == "../data/v1.bin"
    bad = 0
    for k, v in sorted(got.items()):
        if doc.get(k) != v:
            print("MISMATCH %s\n  document: %s\n  computed: %s" % (k, doc.get(k), v))
            bad += 1
    print("%d vectors checked, %d mismatches" % (len(got), bad))
    return 1 if bad else 0


def load_key(args):
    if args.key_file:
        data = open(args.key_file, "rb").read()
        if len(data) == 32:
            return data
        return bytes.fromhex(data.decode().strip())
    return bytes.fromhex(os.environ[args.key_env].strip())


def decrypt(args):
    keys = Keys(load_key(args))
    failures = 0

    def walk(lower_dir, plain_dir):
        nonlocal failures
        for entry in sorted(os.listdir(lower_dir)):
            name = decrypt_name(keys, args.names, plain_dir, entry)
            if name is None:
                continue  # another key's entry, or not an encrypted name
            plain = name if not plain_dir else plain_dir + "/" + name
            full = os.path.join(lower_dir, entry)
            if os.path.islink(full):
                try:
                    print("l %s -> %s" % (plain, decrypt_link(keys, plain, os.readlink(full))))
                except ValueError as e:
                    print("FAIL %s: %s" % (plain, e))
                    failures += 1
                continue
            if os.path.isdir(full):
                print("d %s" % plain)
                walk(full, plain)
                continue
            try:
                data = decrypt_file(keys, open(full, "rb").read(), plain)
                print("f %s %d %s" % (plain, len(data), hashlib.sha256(data).hexdigest()))
            except ValueError as e:
                print("FAIL %s: %s" % (plain, e))
                failures += 1

    root = os.path.join(args.root, ENC_DIR)
    if os.path.isdir(root):
        walk(root, "")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors")
    v.add_argument("doc")
    d = sub.add_parser("decrypt")
    d.add_argument("--key-file")
    d.add_argument("--key-env", default="HFVFS_CRYPT_KEY")
    d.add_argument("--names", choices=["base64url", "base32"], default="base64url")
    d.add_argument("root")
    args = ap.parse_args()
    sys.exit(vectors(args.doc) if args.cmd == "vectors" else decrypt(args))


if __name__ == "__main__":
    main()
