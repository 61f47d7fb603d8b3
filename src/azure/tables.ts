/**
 * The builder lease store over Azure Table Storage (Azurite locally). One entity per builder in
 * partition `builder`, written only with an ETag condition (If-Match), so two writers that read
 * the same version cannot both win; one row per build in partition `build` for the activity log.
 */
import {
  TableClient,
  type TableEntity,
  type TableEntityResult,
  type TableServiceClientOptions,
} from "@azure/data-tables";
import type { TokenCredential } from "@azure/identity";
import { ConflictError, NotFoundError, PermanentError } from "../core/errors.js";
import type {
  BuildActivityRecord,
  BuilderRecord,
  LeaseStore,
  QueueEntry,
  StoredRecord,
} from "../core/lease.js";
import { addRecentBuild, type RecentBuild } from "../core/expectedDuration.js";
import { callAzure, toTypedError } from "./errors.js";

const BUILDER_PARTITION = "builder";
const BUILD_PARTITION = "build";
/** One row per environment (RowKey: its name, URI-encoded: Table keys may not hold / \\ # ?). */
const RECENT_PARTITION = "recent";
/** One row per builder (RowKey: the builder key): its last heartbeat, apart from the lease row. */
const HEARTBEAT_PARTITION = "heartbeat";
/** A lost compare-and-set on the recent list is tried again this many times. */
const RECENT_ATTEMPTS = 5;

interface BuilderEntity {
  holder?: string;
  generation: number;
  leaseExpiresAt?: string;
  acquiredAt?: string;
  lastActivityAt?: string;
  /** JSON array of QueueEntry (tables have no list type; a queue is short). */
  queue: string;
  vmMinutesTotal: number;
}

export interface TableLeaseStoreOptions {
  tableName: string;
  /** Azurite or a key-based account … */
  connectionString?: string | undefined;
  /** … or the account's table endpoint with a managed identity. */
  endpoint?: string | undefined;
  credential?: TokenCredential;
  /** Passed to the SDK client, e.g. `{ tlsOptions: { ca } }` to trust a local emulator's certificate. */
  clientOptions?: TableServiceClientOptions;
}

/**
 * The SDK client of one table, from a connection string (Azurite, a key-based account) or the
 * account's endpoint with a credential; `store` names the caller in the configuration error.
 */
export function openTable(options: TableLeaseStoreOptions, store: string): TableClient {
  if (options.connectionString) {
    // Azurite speaks plain http on loopback; Azure connection strings are https anyway.
    return TableClient.fromConnectionString(options.connectionString, options.tableName, {
      ...options.clientOptions,
      allowInsecureConnection: /^DefaultEndpointsProtocol=http;|TableEndpoint=http:/i.test(
        options.connectionString,
      ),
    });
  }
  if (options.endpoint && options.credential) {
    return new TableClient(options.endpoint, options.tableName, options.credential, options.clientOptions);
  }
  throw new PermanentError(`${store} needs a connection string or an endpoint with a credential`, {
    code: "InvalidConfiguration",
  });
}

/** `LeaseStore` over one table. Call `ensureTable()` once at start (idempotent). */
export class TableLeaseStore implements LeaseStore {
  private readonly client: TableClient;
  private created: Promise<void> | undefined;

  constructor(options: TableLeaseStoreOptions) {
    this.client = openTable(options, "the lease store");
  }

  ensureTable(): Promise<void> {
    this.created ??= this.client.createTable().catch((error: unknown) => {
      this.created = undefined;
      throw toTypedError(error, "table", "create the builders table");
    });
    return this.created;
  }

  async read(key: string): Promise<StoredRecord | undefined> {
    await this.ensureTable();
    try {
      const entity = await this.client.getEntity<BuilderEntity>(BUILDER_PARTITION, key);
      return { record: toRecord(key, entity), etag: entity.etag };
    } catch (error) {
      const typed = toTypedError(error, "table", `read builder ${key}`);
      if (typed instanceof NotFoundError) return undefined;
      throw typed;
    }
  }

  async write(record: BuilderRecord, etag: string | undefined): Promise<boolean> {
    await this.ensureTable();
    const entity = toEntity(record);
    try {
      if (etag === undefined) await this.client.createEntity(entity);
      // Replace (not merge) so cleared fields (holder, expiry) disappear; If-Match makes it a CAS.
      else await this.client.updateEntity(entity, "Replace", { etag });
      return true;
    } catch (error) {
      const typed = toTypedError(error, "table", `write builder ${record.key}`);
      // A conflict is a lost compare-and-set: someone created it first (409) or changed it since we read it (412).
      if (typed instanceof ConflictError) return false;
      throw typed;
    }
  }

  async list(): Promise<BuilderRecord[]> {
    await this.ensureTable();
    const records: BuilderRecord[] = [];
    try {
      const entities = this.client.listEntities<BuilderEntity>({
        queryOptions: { filter: `PartitionKey eq '${BUILDER_PARTITION}'` },
      });
      for await (const entity of entities) records.push(toRecord(entity.rowKey ?? "", entity));
    } catch (error) {
      throw toTypedError(error, "table", "list builders");
    }
    return records;
  }

  async recordBuild(entry: BuildActivityRecord): Promise<void> {
    await this.ensureTable();
    // Upsert: a retried activity writes the same row again.
    await callAzure("table", `record build ${entry.buildId}`, () =>
      this.client.upsertEntity(
        { partitionKey: BUILD_PARTITION, rowKey: `${entry.builderKey}~${entry.buildId}`, ...entry },
        "Replace",
      ),
    );
    if (entry.outcome === "succeeded" && entry.base !== undefined && entry.durationMs !== undefined) {
      await this.addRecent(entry.environment, {
        buildId: entry.buildId,
        base: entry.base,
        durationMs: entry.durationMs,
        endedAt: entry.endedAt,
      });
    }
  }

  async recentBuilds(environment: string): Promise<RecentBuild[]> {
    await this.ensureTable();
    return (await this.readRecent(environment))?.list ?? [];
  }

  private async readRecent(environment: string): Promise<{ list: RecentBuild[]; etag: string } | undefined> {
    try {
      const entity = await this.client.getEntity<{ builds: string }>(
        RECENT_PARTITION,
        recentKey(environment),
      );
      return { list: parseRecent(entity.builds), etag: entity.etag };
    } catch (error) {
      const typed = toTypedError(error, "table", `read recent builds of ${environment}`);
      if (typed instanceof NotFoundError) return undefined;
      throw typed;
    }
  }

  /** Read, add, write with If-Match (create when absent); a lost race reads again. */
  private async addRecent(environment: string, entry: RecentBuild): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.readRecent(environment);
      const entity = {
        partitionKey: RECENT_PARTITION,
        rowKey: recentKey(environment),
        builds: JSON.stringify(addRecentBuild(current?.list ?? [], entry)),
      };
      try {
        if (current) await this.client.updateEntity(entity, "Replace", { etag: current.etag });
        else await this.client.createEntity(entity);
        return;
      } catch (error) {
        const typed = toTypedError(error, "table", `record recent builds of ${environment}`);
        if (!(typed instanceof ConflictError) || attempt >= RECENT_ATTEMPTS) throw typed;
      }
    }
  }

  async recordHeartbeat(key: string, heartbeat: { buildId: string; at: string }): Promise<void> {
    await this.ensureTable();
    // Unconditional upsert into a row of its own: never an ETag the lease's writers compare.
    await callAzure("table", `record heartbeat of builder ${key}`, () =>
      this.client.upsertEntity(
        { partitionKey: HEARTBEAT_PARTITION, rowKey: key, buildId: heartbeat.buildId, at: heartbeat.at },
        "Replace",
      ),
    );
  }

  async readHeartbeat(key: string): Promise<{ buildId: string; at: string } | undefined> {
    await this.ensureTable();
    try {
      const entity = await this.client.getEntity<{ buildId?: string; at?: string }>(HEARTBEAT_PARTITION, key);
      return typeof entity.buildId === "string" && typeof entity.at === "string"
        ? { buildId: entity.buildId, at: entity.at }
        : undefined;
    } catch (error) {
      const typed = toTypedError(error, "table", `read heartbeat of builder ${key}`);
      if (typed instanceof NotFoundError) return undefined;
      throw typed;
    }
  }

  /** The activity rows of one builder (for `GET /api/builders` and tests). */
  async listBuilds(builderKey: string): Promise<BuildActivityRecord[]> {
    await this.ensureTable();
    const rows: BuildActivityRecord[] = [];
    const entities = this.client.listEntities<BuildActivityRecord>({
      queryOptions: { filter: `PartitionKey eq '${BUILD_PARTITION}'` },
    });
    for await (const entity of entities) {
      if (entity.builderKey !== builderKey) continue;
      rows.push({
        builderKey: entity.builderKey,
        buildId: entity.buildId,
        environment: entity.environment,
        startedAt: entity.startedAt,
        endedAt: entity.endedAt,
        outcome: entity.outcome,
        reason: entity.reason,
        vmMinutes: entity.vmMinutes,
        ...(entity.base !== undefined ? { base: entity.base } : {}),
        ...(entity.durationMs !== undefined ? { durationMs: entity.durationMs } : {}),
      });
    }
    return rows;
  }
}

function toEntity(record: BuilderRecord): TableEntity<BuilderEntity> {
  return {
    partitionKey: BUILDER_PARTITION,
    rowKey: record.key,
    generation: record.generation,
    queue: JSON.stringify(record.queue),
    // A Double even when whole, so the column keeps one type.
    vmMinutesTotal: record.vmMinutesTotal,
    ...(record.holder === undefined ? {} : { holder: record.holder }),
    ...(record.leaseExpiresAt === undefined ? {} : { leaseExpiresAt: record.leaseExpiresAt }),
    ...(record.acquiredAt === undefined ? {} : { acquiredAt: record.acquiredAt }),
    ...(record.lastActivityAt === undefined ? {} : { lastActivityAt: record.lastActivityAt }),
  };
}

function toRecord(key: string, entity: TableEntityResult<BuilderEntity>): BuilderRecord {
  let queue: QueueEntry[] = [];
  try {
    const parsed: unknown = JSON.parse(entity.queue);
    if (Array.isArray(parsed)) queue = parsed as QueueEntry[];
  } catch {
    // A damaged queue column only loses queue order, never the lease itself.
  }
  return {
    key,
    holder: entity.holder ?? undefined,
    generation: Number(entity.generation ?? 0),
    leaseExpiresAt: entity.leaseExpiresAt ?? undefined,
    acquiredAt: entity.acquiredAt ?? undefined,
    lastActivityAt: entity.lastActivityAt ?? undefined,
    queue,
    vmMinutesTotal: Number(entity.vmMinutesTotal ?? 0),
  };
}

const recentKey = (environment: string): string => encodeURIComponent(environment);

/** The stored list, keeping only well-formed entries (the column is ours, but a table is editable by hand). */
function parseRecent(text: string | undefined): RecentBuild[] {
  let value: unknown;
  try {
    value = JSON.parse(text ?? "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(value)) return [];
  return value.filter(
    (b): b is RecentBuild =>
      typeof b === "object" &&
      b !== null &&
      typeof (b as RecentBuild).buildId === "string" &&
      ((b as RecentBuild).base === "hit" || (b as RecentBuild).base === "miss") &&
      Number.isFinite((b as RecentBuild).durationMs) &&
      typeof (b as RecentBuild).endedAt === "string",
  );
}
