// A small token service for the registry's `auth.token` mode (docker/distribution token spec):
// an HTTP server on loopback issuing RS256 JWTs signed with a key and certificate generated with
// openssl. GET /token (Basic auth) and POST /token (OAuth2 password and refresh_token grants).
import { execFileSync } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, randomUUID, sign, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface TokenIssuerOptions {
  /** username → password accepted by the token service. */
  readonly users: Readonly<Record<string, string>>;
  /** identity (refresh) token → username, for the OAuth2 refresh_token grant. */
  readonly identityTokens?: Readonly<Record<string, string>>;
  /** `expires_in` announced to clients and the lifetime of issued tokens (default 300 s). */
  readonly ttlSeconds?: number;
  /** Allow anonymous token requests (default false: anonymous gets 401). */
  readonly allowAnonymous?: boolean;
  /** Users granted only `pull`, whatever they ask for (others get every action asked for). */
  readonly pullOnlyUsers?: readonly string[];
}

export interface TokenRequestRecord {
  readonly method: string;
  readonly grantType: string | undefined;
  readonly user: string | undefined;
  readonly scopes: readonly string[];
  readonly status: number;
}

export interface TokenIssuer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certPath: string;
  /** Every token request seen, in order. */
  readonly requests: TokenRequestRecord[];
  /** Every token issued, so tests can assert none leaks into a message or log. */
  readonly issuedTokens: string[];
  /** The next `n` tokens are issued already expired (while announcing a normal `expires_in`). */
  issueExpired(n: number): void;
  close(): Promise<void>;
}

const SERVICE = "test-registry";
const ISSUER = "test-token-issuer";

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

/** libtrust's key id (the registry looks signing keys up by it): base32 of sha256(SPKI DER)[:30], in groups of 4. */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: "spki", format: "der" });
  const hash = createHash("sha256").update(der).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet.charAt((value >>> (bits - 5)) & 31);
      bits -= 5;
    }
  }
  return (out.match(/.{1,4}/g) ?? []).join(":");
}

/** Generates a self-signed RSA key and certificate in `dir` (token.key, token.crt). */
export function generateTokenCertificate(dir: string): { keyPath: string; certPath: string } {
  const keyPath = join(dir, "token.key");
  const certPath = join(dir, "token.crt");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", `/CN=${ISSUER}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  return { keyPath, certPath };
}

export async function startTokenIssuer(dir: string, options: TokenIssuerOptions): Promise<TokenIssuer> {
  const { keyPath, certPath } = generateTokenCertificate(dir);
  const privateKey = createPrivateKey(readFileSync(keyPath));
  const kid = libtrustKeyId(createPublicKey(readFileSync(certPath)));
  const ttl = options.ttlSeconds ?? 300;
  const requests: TokenRequestRecord[] = [];
  const issuedTokens: string[] = [];
  let expiredToIssue = 0;

  const mint = (user: string, scopes: readonly string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const expired = expiredToIssue > 0;
    if (expired) expiredToIssue--;
    // The registry allows 60 s of clock skew: an "expired" token must be well past that.
    const exp = expired ? now - 600 : now + ttl;
    const pullOnly = options.pullOnlyUsers?.includes(user) === true;
    const access = scopes.map((s) => {
      const first = s.indexOf(":");
      const last = s.lastIndexOf(":");
      const asked = s.slice(last + 1).split(",").filter((a) => a !== "");
      return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: pullOnly ? asked.filter((a) => a === "pull") : asked };
    });
    const header = { alg: "RS256", typ: "JWT", kid };
    const claims = { iss: ISSUER, sub: user, aud: SERVICE, exp, nbf: expired ? exp - 60 : now - 10, iat: expired ? exp - 60 : now, jti: randomUUID(), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign("sha256", Buffer.from(signingInput), privateKey);
    const token = `${signingInput}.${b64url(signature)}`;
    issuedTokens.push(token);
    return token;
  };

  const scopesOf = (values: readonly string[]): string[] => values.flatMap((v) => v.split(" ")).filter((s) => s.split(":").length >= 3);

  const reply = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname !== "/token") {
      reply(res, 404, { error: "not found" });
      return;
    }
    if (req.method === "GET") {
      const scopes = scopesOf(url.searchParams.getAll("scope"));
      let user: string | undefined;
      const authz = req.headers.authorization;
      if (authz?.startsWith("Basic ") === true) {
        const decoded = Buffer.from(authz.slice(6), "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        const name = decoded.slice(0, colon);
        if (colon > 0 && options.users[name] === decoded.slice(colon + 1)) user = name;
        else {
          requests.push({ method: "GET", grantType: undefined, user: undefined, scopes, status: 401 });
          reply(res, 401, { errors: [{ code: "UNAUTHORIZED", message: "wrong username or password" }] });
          return;
        }
      } else if (options.allowAnonymous !== true) {
        requests.push({ method: "GET", grantType: undefined, user: undefined, scopes, status: 401 });
        reply(res, 401, { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] });
        return;
      }
      const token = mint(user ?? "", scopes);
      requests.push({ method: "GET", grantType: undefined, user, scopes, status: 200 });
      reply(res, 200, { token, access_token: token, expires_in: ttl, issued_at: new Date().toISOString() });
      return;
    }
    if (req.method === "POST") {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      const grantType = form.get("grant_type") ?? undefined;
      const scopes = scopesOf(form.getAll("scope"));
      let user: string | undefined;
      if (grantType === "refresh_token") user = options.identityTokens?.[form.get("refresh_token") ?? ""];
      else if (grantType === "password") {
        const name = form.get("username") ?? "";
        if (options.users[name] !== undefined && options.users[name] === form.get("password")) user = name;
      }
      if (user === undefined) {
        requests.push({ method: "POST", grantType, user: undefined, scopes, status: 401 });
        reply(res, 401, { error: "invalid_grant" });
        return;
      }
      const token = mint(user, scopes);
      requests.push({ method: "POST", grantType, user, scopes, status: 200 });
      reply(res, 200, { access_token: token, expires_in: ttl, issued_at: new Date().toISOString(), scope: scopes.join(" ") });
      return;
    }
    reply(res, 405, { error: "method not allowed" });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) reply(res, 500, { error: "internal" });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service: SERVICE,
    issuer: ISSUER,
    certPath,
    requests,
    issuedTokens,
    issueExpired(n: number): void {
      expiredToIssue = n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
