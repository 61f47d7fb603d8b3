/**
 * gzip on every core, with the same bytes every time (pigz's scheme): the input is cut at fixed
 * offsets into chunks, each chunk is deflated on libuv's thread pool with the 32 KiB before it as
 * its dictionary and ends with a sync flush (byte-aligned, no end-of-stream), the last one with
 * the end of the stream. The pieces, between one gzip header and trailer, are one ordinary gzip
 * member: gzip, Python's gzip module and node's zlib read it like any other. Where the chunks fall
 * depends on the input only, never on timing, so the output is deterministic.
 *
 * The pieces come out in order through `onOutput`, on the caller's thread, as soon as each is
 * ready: hashing and writing them overlaps with the compression of the next ones.
 */
import { availableParallelism } from "node:os";
import zlib from "node:zlib";

/** Each chunk is compressed on its own; big enough that the restarts cost nothing measurable. */
export const CHUNK_BYTES = 256 * 1024;
/** deflate's window: what a chunk may refer back to. */
const WINDOW_BYTES = 32 * 1024;

/**
 * The gzip header: no name, mtime 0, extra flags 0, OS 3 (Unix) whatever the platform, so the
 * same input gives the same bytes on every client.
 */
const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);

export interface ParallelGzipOptions {
  level: number;
  /** Receives the compressed bytes, in order. May throw (e.g. too large): `write`/`end` reject. */
  onOutput: (bytes: Buffer) => void;
  /** Chunks compressing or waiting to (default: two per core, at most 16). */
  concurrency?: number;
  chunkBytes?: number;
}

export class ParallelGzip {
  private readonly level: number;
  private readonly onOutput: (bytes: Buffer) => void;
  private readonly concurrency: number;
  private readonly chunkBytes: number;
  private chunk: Buffer;
  private fill = 0;
  private previous: Buffer | undefined;
  private readonly pending: { job: Promise<Buffer>; input: Buffer }[] = [];
  /** Chunk buffers done with: the job that read one and the job that took its end as dictionary. */
  private readonly free: Buffer[] = [];
  private lastInput: Buffer | undefined;
  private crc = 0;
  private size = 0;
  private started = false;

  constructor(options: ParallelGzipOptions) {
    this.level = options.level;
    this.onOutput = options.onOutput;
    this.chunkBytes = options.chunkBytes ?? CHUNK_BYTES;
    this.concurrency = Math.max(1, options.concurrency ?? defaultConcurrency());
    this.chunk = Buffer.allocUnsafe(this.chunkBytes);
  }

  /**
   * Adds bytes. Returns a promise only when enough chunks are compressing already: await it
   * before the next write (most writes need no await, which a tree of small files notices).
   */
  write(data: Uint8Array): Promise<void> | undefined {
    const n = Math.min(this.chunkBytes - this.fill, data.length);
    if (n === data.length) {
      this.chunk.set(data, this.fill);
      this.fill += n;
      return undefined;
    }
    return this.writeSlowly(data);
  }

  private async writeSlowly(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      // A full chunk is sent only once more input comes, so `end` always has the last one.
      if (this.fill === this.chunkBytes) {
        this.submit(false);
        if (this.pending.length >= this.concurrency) await this.drain(this.concurrency - 1);
      }
      const n = Math.min(this.chunkBytes - this.fill, data.length - offset);
      this.chunk.set(data.subarray(offset, offset + n), this.fill);
      this.fill += n;
      offset += n;
    }
  }

  /** Compresses what is left and emits the rest of the stream, ending with the gzip trailer. */
  async end(): Promise<void> {
    this.submit(true);
    await this.drain(0);
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(this.crc >>> 0, 0);
    trailer.writeUInt32LE(this.size % 2 ** 32, 4);
    this.onOutput(trailer);
  }

  private submit(final: boolean): void {
    const input = this.chunk.subarray(0, this.fill);
    this.crc = crc32(input, this.crc);
    this.size += input.length;
    const options: zlib.ZlibOptions = {
      level: this.level,
      // Enough room for the whole piece (incompressible input grows a little): one round trip.
      chunkSize: this.chunkBytes + 1024,
      finishFlush: final ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
    };
    if (this.previous) options.dictionary = this.previous.subarray(this.previous.length - WINDOW_BYTES);
    const job = new Promise<Buffer>((resolve, reject) =>
      zlib.deflateRaw(input, options, (error, out) => (error ? reject(error) : resolve(out))),
    );
    // Awaited in order by `drain`; until then a failure must not count as unhandled.
    job.catch(() => {});
    this.pending.push({ job, input: this.chunk });
    // Not reused until this job and the next are done: they read it as input and as dictionary.
    this.previous = input.length >= WINDOW_BYTES ? input : undefined;
    this.chunk = this.free.pop() ?? Buffer.allocUnsafe(this.chunkBytes);
    this.fill = 0;
  }

  /** Emits finished pieces in order until at most `left` are still compressing. */
  private async drain(left: number): Promise<void> {
    while (this.pending.length > left) {
      const { job, input } = this.pending.shift()!;
      const out = await job;
      if (this.lastInput) this.free.push(this.lastInput);
      this.lastInput = input;
      if (!this.started) {
        this.started = true;
        this.onOutput(HEADER);
      }
      this.onOutput(out);
    }
  }
}

/**
 * Two chunks per core (at most 16, ~8 MiB in flight): the thread pool (4 threads unless
 * UV_THREADPOOL_SIZE says more) stays busy while this thread reads files; extra ones just queue.
 */
function defaultConcurrency(): number {
  return Math.min(16, 2 * Math.max(1, availableParallelism()));
}

let table: Int32Array | undefined;

/** CRC-32 as gzip has it, in plain JS: for Node releases before `zlib.crc32` (20.15). */
export function crc32Js(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c;
    }
  }
  let crc = ~value;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
const crc32: (data: Uint8Array, value: number) => number = nativeCrc32 ?? crc32Js;
