import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { it } from "node:test";
import { createOutput } from "../../src/cli/progress.js";

function sink(isTTY: boolean): { stream: Writable & { isTTY: boolean }; text: () => string } {
  let text = "";
  const stream = Object.assign(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        text += chunk.toString();
        done();
      },
    }),
    { isTTY },
  );
  return { stream, text: () => text };
}

it("writes plain lines without control characters when not a terminal", () => {
  const { stream, text } = sink(false);
  const out = createOutput(stream);
  out.status("building");
  out.line("▸ building");
  out.stop();
  assert.equal(text(), "▸ building\n");
});

it("on a terminal, keeps a status line below the printed lines and clears it at the end", () => {
  const { stream, text } = sink(true);
  const out = createOutput(stream, () => 0);
  out.status("building");
  out.line("  │ Compiling app");
  out.stop();
  const written = text();
  assert.match(written, /building \(0 ms\)/);
  assert.ok(written.includes("\r\x1b[2K  │ Compiling app\n"));
  assert.ok(written.endsWith("\r\x1b[2K"));
});
