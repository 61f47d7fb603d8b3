/**
 * A self-signed certificate for the local cloud's HTTPS servers (ARM emulator, Azurite with OAuth).
 * It must name both `IP:127.0.0.1` and `DNS:localhost`, or Node refuses it by name; clients trust
 * it through `tlsOptions.ca` or `NODE_EXTRA_CA_CERTS`.
 */
import { randomUUID } from "node:crypto";
import { generate } from "selfsigned";

export async function createLoopbackCertificate(): Promise<{ key: string; cert: string }> {
  const now = new Date();
  // A subject of its own: a client that trusts two of these (two emulators) finds each one's issuer
  // by subject name, and OpenSSL tries only the first certificate with a matching name.
  const subject = [
    { name: "commonName", value: "localhost" },
    { name: "organizationName", value: `local-cloud ${randomUUID()}` },
  ];
  const result = await generate(subject, {
    keyType: "ec",
    curve: "P-256",
    notBeforeDate: new Date(now.getTime() - 60_000),
    notAfterDate: new Date(now.getTime() + 7 * 24 * 3600_000),
    extensions: [
      { name: "basicConstraints", cA: true },
      { name: "keyUsage", digitalSignature: true, keyCertSign: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 7, ip: "127.0.0.1" },
          { type: 2, value: "localhost" },
        ],
      },
    ],
  });
  return { key: result.private, cert: result.cert };
}
