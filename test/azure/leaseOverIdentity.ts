/**
 * Child-process half of `leaseIdentity.test.ts`. `TableLeaseStore` takes no client options, so the
 * only way to trust Azurite's self-signed certificate is process-wide: the parent starts this
 * script with `NODE_EXTRA_CA_CERTS` (read at process start) and the app's identity settings
 * (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`), exactly as the Functions host would. It runs the lease
 * scenarios over the real ManagedIdentityCredential and prints what happened as one JSON line.
 */
import { TableLeaseStore } from "../../src/azure/tables.js";
import { createCredential } from "../../src/azure/credentials.js";
import { decideAcquire, emptyRecord, mutateRecord } from "../../src/core/lease.js";

export interface LeaseOverIdentityReport {
  /** Two app instances create the same builder record: [first, second]. */
  creates: boolean[];
  /** Both read the same version, then both write it: [first, second]. */
  casWrites: boolean[];
  holderAfterCas: string | undefined;
  /** Both ask for the lease at once (compare-and-set under the hood). */
  acquires: string[];
  generationAfterAcquire: number;
  queuedAfterAcquire: number;
  listedKeys: string[];
}

const endpoint = process.env.FASTBUILD_TEST_TABLE_ENDPOINT;
if (!endpoint) throw new Error("FASTBUILD_TEST_TABLE_ENDPOINT is not set");

// Two stores, each with its own credential: two function app instances sharing one identity.
const appInstance = () =>
  new TableLeaseStore({
    endpoint,
    credential: createCredential({ mode: "managedIdentity" }),
    tableName: "leaseidentity",
  });
const a = appInstance();
const b = appInstance();

await a.ensureTable();
await b.ensureTable(); // the table exists by now: must not fail

const creates = [
  await a.write(emptyRecord("k-create"), undefined),
  await b.write(emptyRecord("k-create"), undefined),
];

const seenByA = (await a.read("k-create"))!;
const seenByB = (await b.read("k-create"))!;
const casWrites = [
  await a.write({ ...seenByA.record, generation: 1, holder: "build-a" }, seenByA.etag),
  await b.write({ ...seenByB.record, generation: 1, holder: "build-b" }, seenByB.etag),
];
const holderAfterCas = (await b.read("k-create"))?.record.holder;

const timing = { leaseMs: 60_000, queueStaleMs: 60_000 };
const acquire = (store: TableLeaseStore, buildId: string) =>
  mutateRecord(store, "k-race", (record) => {
    const decision = decideAcquire(record, buildId, new Date(), timing);
    return { record: decision.record, result: decision.kind };
  });
const acquires = await Promise.all([acquire(a, "build-1"), acquire(b, "build-2")]);
const raced = (await a.read("k-race"))!.record;

const report: LeaseOverIdentityReport = {
  creates,
  casWrites,
  holderAfterCas,
  acquires,
  generationAfterAcquire: raced.generation,
  queuedAfterAcquire: raced.queue.length,
  listedKeys: (await b.list()).map((record) => record.key).sort(),
};
process.stdout.write(`${JSON.stringify(report)}\n`);
