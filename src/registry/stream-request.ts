// Uploads with a streamed body go over node:http(s) instead of fetch: node's request writes the body
// only as fast as the socket drains, so memory stays flat whatever the blob size. (Node 20's fetch
// held a whole 300 MiB upload in memory when handed a streamed body, with or without a pull-based
// web stream.) The answer is returned as a web Response, like fetch's.
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export interface StreamRequestInit {
  method: string;
  headers: Record<string, string>;
  signal: AbortSignal;
}

function toResponse(res: IncomingMessage, method: string): Response {
  const status = res.statusCode ?? 0;
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers)) {
    if (Array.isArray(v)) for (const x of v) headers.append(k, x);
    else if (v !== undefined) headers.set(k, v);
  }
  const noBody = method === "HEAD" || status === 204 || status === 304;
  if (noBody) res.resume();
  return new Response(noBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, headers });
}

export function streamRequest(url: string, init: StreamRequestInit, body: AsyncIterable<Uint8Array>): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const u = new URL(url);
    const send = u.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(u, { method: init.method, headers: init.headers, signal: init.signal }, (res) => {
      resolve(toResponse(res, init.method));
    });
    req.on("error", reject);
    // The registry may answer (e.g. 401) before reading the whole body; the answer wins then.
    pipeline(Readable.from(body, { objectMode: false }), req).catch(reject);
  });
}
