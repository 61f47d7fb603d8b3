/**
 * Output for humans. On a TTY a spinner line shows the current phase and elapsed time, and printed
 * lines scroll above it; elsewhere (CI logs, pipes) only plain lines, no control characters.
 */
import type { Writable } from "node:stream";
import { formatDuration } from "./render.js";

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const CLEAR_LINE = "\r\x1b[2K";

export interface Output {
  /** A permanent line. */
  line(text: string): void;
  /** The transient status (TTY only). */
  status(text: string): void;
  /** Removes the status line; call before exiting. */
  stop(): void;
}

export function createOutput(stream: Writable & { isTTY?: boolean }, now: () => number = Date.now): Output {
  if (!stream.isTTY) {
    return { line: (text) => void stream.write(`${text}\n`), status: () => {}, stop: () => {} };
  }
  let text = "";
  let since = now();
  let frame = 0;
  let timer: NodeJS.Timeout | undefined;
  const draw = () => {
    if (!text) return;
    stream.write(
      `${CLEAR_LINE}${FRAMES[frame++ % FRAMES.length]} ${text} (${formatDuration(now() - since)})`,
    );
  };
  return {
    line(line) {
      stream.write(`${CLEAR_LINE}${line}\n`);
      draw();
    },
    status(next) {
      if (next !== text) since = now();
      text = next;
      // Unref'd: a forgotten spinner must never keep the process alive.
      timer ??= setInterval(draw, 100).unref();
      draw();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      if (text) stream.write(CLEAR_LINE);
      text = "";
    },
  };
}
