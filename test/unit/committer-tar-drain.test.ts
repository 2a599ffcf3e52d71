// readTar stops at the end-of-archive marker, but GNU tar pads its archive to a whole 10 KiB record
// after it. Unless the source is read to its end, a pipe from tar never ends, the tar child process
// never emits 'close', and captureUpperdir waits forever while the containers are frozen (seen on real
// containerd: the committer's event loop emptied mid-capture, the process exited 0 with no result and
// the container stayed PAUSED).
import { describe, expect, it } from "vitest";
import { emptyHeader, encodeHeader, END_OF_ARCHIVE, readTar } from "../../src/committer/tar.js";

describe("tar reader", () => {
  it("reads its source to the end, past the end-of-archive marker and tar's record padding", async () => {
    const archive = Buffer.concat([encodeHeader({ ...emptyHeader("a-dir", "dir"), size: 0 }), END_OF_ARCHIVE, Buffer.alloc(10240 - 3 * 512)]);
    let finished = false;
    async function* source(): AsyncGenerator<Buffer> {
      // in pieces, as a pipe delivers it
      for (let i = 0; i < archive.length; i += 4096) {
        await Promise.resolve();
        yield archive.subarray(i, i + 4096);
      }
      finished = true;
    }
    const names: string[] = [];
    for await (const e of readTar(source())) names.push(e.header.name);
    expect(names).toEqual(["a-dir/"]);
    expect(finished).toBe(true);
  });
});
