// Drives the Hub emulator with the official @huggingface/hub client and compares what it sees
// with the fixture files on disk. Exits non-zero on any mismatch.
//
//   node tests/support/hubjs/check_emulator.mjs --fixtures DIR [--hub-url http://127.0.0.1:PORT]
//
// Without --hub-url it starts tests/support/hub_emulator.py itself (with /usr/bin/python3) on
// free ports and stops it by pid at the end. DIR is a folder made by make_hub_fixtures.py.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
	listFiles,
	pathsInfo,
	fileDownloadInfo,
	downloadFile,
	modelInfo,
	datasetInfo,
	parseSafetensorsMetadata,
} from "@huggingface/hub";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name) => {
	const i = args.indexOf(name);
	return i >= 0 ? args[i + 1] : undefined;
};
const fixtures = opt("--fixtures") ?? process.env.HFVFS_HUB_FIXTURES;
if (!fixtures) {
	console.error("usage: check_emulator.mjs --fixtures DIR [--hub-url URL]");
	process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(fixtures, "manifest.json"), "utf8"));
const TOKEN = manifest.tokens.reader;

const failures = [];
let checks = 0;
function expect(cond, what) {
	checks++;
	if (!cond) {
		failures.push(what);
		console.error("MISMATCH: " + what);
	}
}
function expectEq(got, want, what) {
	expect(got === want, `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

const LFS_SUFFIXES = [".safetensors", ".bin", ".onnx"];
const isLfs = (path, size) => LFS_SUFFIXES.some((s) => path.endsWith(s)) || size > 10 * 1024 * 1024;
const sha = (algo, ...parts) => {
	const h = createHash(algo);
	for (const p of parts) h.update(p);
	return h.digest("hex");
};
const gitBlobOid = (buf) => sha("sha1", Buffer.from(`blob ${buf.length}\0`), buf);
const lfsPointer = (sha256, size) =>
	Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
// The client puts `path` in the URL as is; file names with a space or '#' must be pre-encoded.
const encPath = (p) => p.split("/").map(encodeURIComponent).join("/");

/** Files and directories of a fixture commit folder: {files: Map path->abs, dirs: Set}. */
function walk(root) {
	const files = new Map();
	const dirs = new Set();
	const rec = (rel) => {
		for (const name of readdirSync(join(root, rel))) {
			const p = rel ? `${rel}/${name}` : name;
			if (statSync(join(root, p)).isDirectory()) {
				dirs.add(p);
				rec(p);
			} else {
				files.set(p, join(root, p));
			}
		}
	};
	rec("");
	return { files, dirs };
}

async function collect(gen) {
	const out = [];
	for await (const x of gen) out.push(x);
	return out;
}

async function startEmulator() {
	const child = spawn("/usr/bin/python3", [join(here, "..", "hub_emulator.py"), "--fixtures", fixtures], {
		stdio: ["ignore", "pipe", "inherit"],
	});
	const line = await new Promise((resolve, reject) => {
		const rl = createInterface({ input: child.stdout });
		rl.once("line", resolve);
		child.once("exit", (code) => reject(new Error(`emulator exited with ${code}`)));
	});
	return { child, ready: JSON.parse(line) };
}

/** Compares one revision of a repo, as listed and downloaded by the client, with its folder. */
async function checkRevision(hubUrl, repo, revision, filesDir, { download = true, accessToken } = {}) {
	const tag = `${repo}@${revision}`;
	const disk = walk(filesDir);
	// listFiles does not encode the revision: pass refs/pr/1 already encoded.
	const listRev = encodeURIComponent(revision);
	const all = await collect(listFiles({ repo, revision: listRev, recursive: true, hubUrl, accessToken }));
	const listedFiles = new Map(all.filter((e) => e.type === "file").map((e) => [e.path, e]));
	const listedDirs = new Set(all.filter((e) => e.type === "directory").map((e) => e.path));
	expectEq(listedFiles.size, disk.files.size, `${tag} recursive listing: file count`);
	expectEq([...listedDirs].sort().join("|"), [...disk.dirs].sort().join("|"), `${tag} recursive listing: dirs`);

	const top = await collect(listFiles({ repo, revision: listRev, hubUrl, accessToken }));
	const wantTop = [...disk.files.keys(), ...disk.dirs].filter((p) => !p.includes("/")).sort();
	expectEq(top.map((e) => e.path).sort().join("|"), wantTop.join("|"), `${tag} top-level listing`);

	for (const dir of disk.dirs) {
		const sub = await collect(listFiles({ repo, revision: listRev, path: encPath(dir), hubUrl, accessToken }));
		const want = [...disk.files.keys(), ...disk.dirs].filter((p) => p.startsWith(dir + "/") && !p.slice(dir.length + 1).includes("/"));
		expectEq(sub.map((e) => e.path).sort().join("|"), want.sort().join("|"), `${tag} listing of ${dir}/`);
	}

	const infos = await pathsInfo({ repo, revision, paths: [...disk.files.keys(), ...disk.dirs, "no/such/file"], hubUrl, accessToken });
	expectEq(infos.length, disk.files.size + disk.dirs.size, `${tag} paths-info: count (missing path omitted)`);
	const byPath = new Map(infos.map((i) => [i.path, i]));
	const expanded = await pathsInfo({ repo, revision, paths: [...disk.files.keys()], expand: true, hubUrl, accessToken });
	for (const e of expanded) {
		expect(/^[0-9a-f]{40}$/.test(e.lastCommit?.id ?? "") && !isNaN(e.lastCommit.date.getTime()), `${tag} ${e.path}: paths-info expand=true gives lastCommit`);
	}

	for (const [path, abs] of disk.files) {
		const buf = readFileSync(abs);
		const lfs = isLfs(path, buf.length);
		const sha256 = lfs ? sha("sha256", buf) : undefined;
		const ptr = lfs ? lfsPointer(sha256, buf.length) : undefined;
		const wantOid = gitBlobOid(lfs ? ptr : buf);
		for (const [src, e] of [["listFiles", listedFiles.get(path)], ["pathsInfo", byPath.get(path)]]) {
			if (!e) {
				expect(false, `${tag} ${path}: missing from ${src}`);
				continue;
			}
			expectEq(e.type, "file", `${tag} ${path}: ${src} type`);
			expectEq(e.oid, wantOid, `${tag} ${path}: ${src} oid`);
			expectEq(e.size, lfs ? ptr.length : buf.length, `${tag} ${path}: ${src} size`);
			if (lfs) {
				expectEq(e.lfs?.oid, sha256, `${tag} ${path}: ${src} lfs.oid`);
				expectEq(e.lfs?.size, buf.length, `${tag} ${path}: ${src} lfs.size`);
				expectEq(e.lfs?.pointerSize, ptr.length, `${tag} ${path}: ${src} lfs.pointerSize`);
			} else {
				expectEq(e.lfs, undefined, `${tag} ${path}: ${src} has no lfs`);
			}
		}
		for (const dir of disk.dirs) {
			expectEq(byPath.get(dir)?.type, "directory", `${tag} ${dir}: pathsInfo type`);
		}
		if (!download || buf.length === 0) {
			continue; // a 0-byte file cannot answer the client's `Range: bytes=0-0` probe
		}
		const info = await fileDownloadInfo({ repo, revision, path: encPath(path), hubUrl, accessToken });
		expectEq(info?.size, buf.length, `${tag} ${path}: fileDownloadInfo size`);
		expectEq(info?.etag, `"${lfs ? sha256 : wantOid}"`, `${tag} ${path}: fileDownloadInfo etag`);
		const blob = await downloadFile({ repo, revision, path: encPath(path), hubUrl, accessToken });
		const got = Buffer.from(await blob.arrayBuffer());
		expect(got.equals(buf), `${tag} ${path}: downloaded bytes differ from the fixture (${got.length} vs ${buf.length} bytes)`);
		if (buf.length > 16) {
			const part = Buffer.from(await blob.slice(3, 15).arrayBuffer());
			expect(part.equals(buf.subarray(3, 15)), `${tag} ${path}: ranged read [3,15) differs`);
		}
	}
}

async function expectThrows(promise, status, what) {
	try {
		await promise;
		expect(false, `${what}: expected an error ${status}, got success`);
	} catch (e) {
		expectEq(e.statusCode, status, `${what}: error status`);
	}
}

async function main() {
	let emu;
	let hubUrl = opt("--hub-url");
	if (!hubUrl) {
		emu = await startEmulator();
		hubUrl = `http://127.0.0.1:${emu.ready.port}`;
	}
	try {
		const tiny = manifest.repos["model/hfvfs-test/tiny-model"];
		const mainDir = tiny.files_dir.main;
		await checkRevision(hubUrl, "hfvfs-test/tiny-model", "main", mainDir);
		await checkRevision(hubUrl, "hfvfs-test/tiny-model", "v1.0", tiny.files_dir.v1);
		await checkRevision(hubUrl, "hfvfs-test/tiny-model", "refs/pr/1", tiny.files_dir.pr1);
		await checkRevision(hubUrl, "hfvfs-test/tiny-model", "feature/x", tiny.files_dir.v1, { download: false });
		await checkRevision(hubUrl, "hfvfs-test/tiny-model", tiny.commits.main, mainDir, { download: false });

		// The client's own safetensors reader: header length, JSON header, parameter counts, read
		// with ranged requests through the 302 and the CDN.
		for (const [rev, key] of [["main", "main"], ["v1.0", "v1"]]) {
			const st = await parseSafetensorsMetadata({ repo: "hfvfs-test/tiny-model", revision: rev, computeParametersCount: true, hubUrl });
			expectEq(st.sharded, false, `safetensors@${rev}: not sharded`);
			expectEq(JSON.stringify(st.header), JSON.stringify(tiny.safetensors[key]), `safetensors@${rev}: header`);
			expectEq(JSON.stringify(st.parameterCount), JSON.stringify({ F32: 136, F16: 8, I64: 16 }), `safetensors@${rev}: parameter count`);
		}

		const mi = await modelInfo({ name: "hfvfs-test/tiny-model", hubUrl });
		expectEq(mi.name, "hfvfs-test/tiny-model", "modelInfo name");
		expectEq(mi.private, false, "modelInfo private");
		expectEq(mi.updatedAt.toISOString(), "2024-03-01T12:30:00.000Z", "modelInfo updatedAt");
		const mi1 = await modelInfo({ name: "hfvfs-test/tiny-model", revision: "v1.0", hubUrl, additionalFields: ["sha"] });
		expectEq(mi1.sha, tiny.commits.v1, "modelInfo at v1.0: sha");

		// A missing file: fileDownloadInfo answers null only on X-Error-Code: EntryNotFound.
		expectEq(await fileDownloadInfo({ repo: "hfvfs-test/tiny-model", path: "nope.txt", hubUrl }), null, "fileDownloadInfo of a missing file");
		await expectThrows(collect(listFiles({ repo: "hfvfs-test/tiny-model", revision: "no-such-rev", hubUrl })), 404, "listFiles at a missing revision");

		// The private repo: refused without a token, served with one.
		const priv = manifest.repos["model/hfvfs-test/private-model"];
		await expectThrows(collect(listFiles({ repo: "hfvfs-test/private-model", hubUrl })), 401, "private repo without token");
		await expectThrows(collect(listFiles({ repo: "hfvfs-test/private-model", hubUrl, accessToken: manifest.tokens.no_access })), 404, "private repo with a token without access");
		await checkRevision(hubUrl, "hfvfs-test/private-model", "main", priv.files_dir.main, { accessToken: TOKEN });
		const pi = await modelInfo({ name: "hfvfs-test/private-model", hubUrl, accessToken: TOKEN });
		expectEq(pi.private, true, "modelInfo private repo: private");

		// A gated repo: listed freely, files only with a granted token.
		const gated = manifest.repos["model/hfvfs-test/gated-model"];
		const gatedList = await collect(listFiles({ repo: "hfvfs-test/gated-model", hubUrl }));
		expectEq(gatedList.length, 2, "gated repo: listing without token");
		await expectThrows(fileDownloadInfo({ repo: "hfvfs-test/gated-model", path: "config.json", hubUrl }), 401, "gated file without token");
		await expectThrows(fileDownloadInfo({ repo: "hfvfs-test/gated-model", path: "config.json", hubUrl, accessToken: manifest.tokens.no_access }), 403, "gated file with a token not granted");
		await checkRevision(hubUrl, "hfvfs-test/gated-model", "main", gated.files_dir.main, { accessToken: TOKEN });

		// Dataset with 10,000 files: pagination through absolute Link headers.
		const many = manifest.repos["dataset/hfvfs-test/many-files"];
		const entries = await collect(listFiles({ repo: "datasets/hfvfs-test/many-files", recursive: true, hubUrl }));
		expectEq(entries.filter((e) => e.type === "file").length, 10000, "dataset recursive listing: files");
		expectEq(entries.filter((e) => e.type === "directory").length, 101, "dataset recursive listing: dirs");
		expectEq(new Set(entries.map((e) => e.path)).size, entries.length, "dataset listing: no duplicates across pages");
		const row = await downloadFile({ repo: "datasets/hfvfs-test/many-files", path: "train/part-042/row-007.json", hubUrl });
		expect(Buffer.from(await row.arrayBuffer()).equals(readFileSync(join(many.files_dir.main, "train/part-042/row-007.json"))), "dataset file bytes");
		const di = await datasetInfo({ name: "hfvfs-test/many-files", hubUrl });
		expectEq(di.name, "hfvfs-test/many-files", "datasetInfo name");

		// A space.
		const space = manifest.repos["space/hfvfs-test/tiny-space"];
		await checkRevision(hubUrl, "spaces/hfvfs-test/tiny-space", "main", space.files_dir.main);
	} finally {
		if (emu) {
			process.kill(emu.ready.pid, "SIGTERM");
		}
	}
	console.log(`${checks} checks, ${failures.length} mismatches`);
	process.exit(failures.length ? 1 : 0);
}

main().catch((e) => {
	console.error("check_emulator failed:", e);
	process.exit(1);
});
