/**
 * The archive's gzip (src/cli/parallelGzip.ts): chunks compressed side by side must make one
 * ordinary gzip stream that every reader the builder or a developer may use reads back exactly,
 * with bytes that depend on the input only — not on how many chunks compress at once, nor on how
 * the input was cut into writes.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import zlib from "node:zlib";
import { crc32Js, ParallelGzip } from "../../src/cli/parallelGzip.js";

const CHUNK = 64 * 1024;

async function gzip(
  input: Buffer,
  options: { concurrency?: number; slices?: number[] } = {},
): Promise<Buffer> {
  const out: Buffer[] = [];
  const gz = new ParallelGzip({
    level: 6,
    chunkBytes: CHUNK,
    onOutput: (bytes) => out.push(Buffer.from(bytes)),
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
  });
  const slices = options.slices ?? [input.length];
  let offset = 0;
  for (let i = 0; offset < input.length; i++) {
    const n = Math.max(1, slices[i % slices.length]!);
    await gz.write(input.subarray(offset, offset + n));
    offset += n;
  }
  await gz.end();
  return Buffer.concat(out);
}

/** What the scheme says the bytes must be, one chunk after another, synchronously. */
function reference(input: Buffer): Buffer {
  const parts = [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])];
  const chunks = Math.max(1, Math.ceil(input.length / CHUNK));
  for (let i = 0; i < chunks; i++) {
    const last = i === chunks - 1;
    parts.push(
      zlib.deflateRawSync(input.subarray(i * CHUNK, (i + 1) * CHUNK), {
        level: 6,
        finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
        ...(i > 0 ? { dictionary: input.subarray(i * CHUNK - 32 * 1024, i * CHUNK) } : {}),
      }),
    );
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(zlib.crc32(input), 0);
  trailer.writeUInt32LE(input.length, 4);
  return Buffer.concat([...parts, trailer]);
}

/** Text that compresses like source code, with an incompressible stretch in the middle. */
function sample(bytes: number): Buffer {
  const text = Buffer.from(
    Array.from({ length: bytes / 20 }, (_, i) => `let x${i % 997} = y${(i * 7) % 13};\n`).join(""),
  );
  return Buffer.concat([text.subarray(0, bytes / 2), randomBytes(3 * CHUNK + 123), text.subarray(bytes / 2)]);
}

describe("parallel gzip", () => {
  const input = sample(1_200_000);

  it("reads back exactly with node's zlib, GNU gzip and Python's gzip module", async () => {
    const out = await gzip(input);
    assert.ok(input.length > 10 * CHUNK);
    assert.deepEqual(zlib.gunzipSync(out), input);
    assert.deepEqual(execFileSync("gzip", ["-dc"], { input: out, maxBuffer: 1 << 26 }), input);
    const python = "import gzip, sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))";
    assert.deepEqual(execFileSync("python3", ["-c", python], { input: out, maxBuffer: 1 << 26 }), input);
    // One member, one deflate stream: readers that stop after the first member see everything too.
    assert.deepEqual(zlib.inflateRawSync(out.subarray(10, -8)), input);
  });

  it("gives the same bytes whatever the concurrency and however the input is cut into writes", async () => {
    const expected = reference(input);
    for (const concurrency of [1, 2, 3, 16]) {
      assert.deepEqual(await gzip(input, { concurrency }), expected, `concurrency ${concurrency}`);
    }
    assert.deepEqual(await gzip(input, { slices: [1, 511, 4096, 70_000, 3] }), expected);
    assert.deepEqual(await gzip(input, { slices: [CHUNK] }), expected);
  });

  it("handles empty input and input ending exactly on a chunk boundary", async () => {
    for (const data of [Buffer.alloc(0), input.subarray(0, 4 * CHUNK), input.subarray(0, CHUNK)]) {
      const out = await gzip(data);
      assert.deepEqual(zlib.gunzipSync(out), data);
      assert.deepEqual(out, reference(data));
    }
  });

  it("rejects the write that makes the output refuse more bytes", async () => {
    let total = 0;
    const gz = new ParallelGzip({
      level: 6,
      chunkBytes: CHUNK,
      concurrency: 2,
      onOutput: (bytes) => {
        total += bytes.length;
        if (total > 100_000) throw new Error("too large");
      },
    });
    await assert.rejects(async () => {
      await gz.write(randomBytes(20 * CHUNK));
      await gz.end();
    }, /too large/);
  });

  it("computes CRC-32 in plain JS as zlib does (for Node releases without zlib.crc32)", () => {
    const data = randomBytes(100_003);
    assert.equal(crc32Js(data), zlib.crc32(data));
    assert.equal(crc32Js(data.subarray(5000), crc32Js(data.subarray(0, 5000))), zlib.crc32(data));
    assert.equal(crc32Js(Buffer.alloc(0)), 0);
  });
});
