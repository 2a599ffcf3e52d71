// A pino destination that keeps what the server logged, for assertions on log text.
import { Writable } from "node:stream";

export class LogCapture extends Writable {
  text = "";
  /** The non-empty log lines so far. */
  get lines(): string[] {
    return this.text.split("\n").filter((l) => l !== "");
  }
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}
