/**
 * The build history and the builders' power transitions, in one table of their own
 * (FASTBUILD_HISTORY_TABLE). Rows, all keyed so that a list reads newest first in key order:
 * - partition `builds` (every environment) and `builds~<env>` (one): RowKey `<inverted ms>~<build id>`,
 *   the same build written to both; an upsert by that key, so a retried activity writes it again;
 * - partition `power~<builder key>`: RowKey `<inverted ms>~<state>`, one row per transition.
 * Table keys may not hold / \ # ?, so names are URI-encoded into keys.
 */
import type { TableClient } from "@azure/data-tables";
import { odata, type TableServiceClientOptions } from "@azure/data-tables";
import type { TokenCredential } from "@azure/identity";
import {
  encodeCursor,
  decodeCursor,
  historyRowKey,
  invertedTime,
  POWER_EVENTS,
  type BuildHistoryRecord,
  type HistoryPage,
  type PowerEvent,
  type PowerTransition,
} from "../core/history.js";
import { callAzure, toTypedError } from "./errors.js";
import { openTable } from "./tables.js";

/** What the activities, the builder functions and the API read and write. */
export interface HistoryStore {
  /** Upsert (by build id and creation time): writing the same build twice leaves one row. */
  recordBuild(record: BuildHistoryRecord): Promise<void>;
  /** Newest first; `cursor` from a previous page's `next` (400 `InvalidCursor` if it is not one). */
  listBuilds(query: { environment?: string; limit: number; cursor?: string }): Promise<HistoryPage>;
  /** Builds created at or after `since`, newest first (at most `max`). */
  buildsSince(since: Date, environment: string | undefined, max: number): Promise<BuildHistoryRecord[]>;
  /** Appends a transition unless the builder's last one is already `state` (so a retry adds nothing). */
  recordPower(transition: PowerTransition): Promise<boolean>;
  /** The builder's last recorded state, if any. */
  lastPowerState(builderKey: string): Promise<PowerEvent | undefined>;
  /** The builder's transitions since `since`, plus the last one before it (the state the window starts in). */
  powerSince(builderKey: string, since: Date): Promise<PowerTransition[]>;
}

export interface TableHistoryStoreOptions {
  tableName: string;
  connectionString?: string | undefined;
  endpoint?: string | undefined;
  credential?: TokenCredential;
  clientOptions?: TableServiceClientOptions;
}

const ALL = "builds";
const envPartition = (environment: string) => `builds~${encodeURIComponent(environment)}`;
const powerPartition = (builderKey: string) => `power~${encodeURIComponent(builderKey)}`;

/** A record's JSON in one column (64 KB per string property; a record is well under 4 KB). */
interface HistoryEntity {
  buildId: string;
  environment: string;
  createdAt: string;
  record: string;
}

interface PowerEntity {
  builderKey: string;
  builder: string;
  state: string;
  at: string;
  vmSize: string;
}

export class TableHistoryStore implements HistoryStore {
  private readonly client: TableClient;
  private created: Promise<void> | undefined;

  constructor(options: TableHistoryStoreOptions) {
    this.client = openTable(options, "the history store");
  }

  ensureTable(): Promise<void> {
    this.created ??= this.client.createTable().catch((error: unknown) => {
      this.created = undefined;
      throw toTypedError(error, "table", "create the history table");
    });
    return this.created;
  }

  async recordBuild(record: BuildHistoryRecord): Promise<void> {
    await this.ensureTable();
    const rowKey = historyRowKey(record.createdAt, record.buildId);
    const entity: HistoryEntity = {
      buildId: record.buildId,
      environment: record.environment,
      createdAt: record.createdAt,
      record: JSON.stringify(record),
    };
    for (const partitionKey of [ALL, envPartition(record.environment)]) {
      await callAzure("table", `record the history of build ${record.buildId}`, () =>
        this.client.upsertEntity({ partitionKey, rowKey, ...entity }, "Replace"),
      );
    }
  }

  async listBuilds(query: { environment?: string; limit: number; cursor?: string }): Promise<HistoryPage> {
    const partition = query.environment === undefined ? ALL : envPartition(query.environment);
    const from = query.cursor === undefined ? undefined : decodeCursor(query.cursor, partition);
    await this.ensureTable();
    // One more than asked: whether it exists says whether there is a next page, and where it starts.
    const rows = await this.rows<HistoryEntity>(
      from === undefined
        ? odata`PartitionKey eq ${partition}`
        : odata`PartitionKey eq ${partition} and RowKey ge ${from}`,
      query.limit + 1,
      "list the build history",
    );
    const page = rows.slice(0, query.limit);
    const next = rows[query.limit];
    return {
      builds: page.flatMap((row) => parseRecord(row.record)),
      ...(next ? { next: encodeCursor(partition, next.rowKey) } : {}),
    };
  }

  async buildsSince(
    since: Date,
    environment: string | undefined,
    max: number,
  ): Promise<BuildHistoryRecord[]> {
    await this.ensureTable();
    const partition = environment === undefined ? ALL : envPartition(environment);
    const rows = await this.rows<HistoryEntity>(
      odata`PartitionKey eq ${partition} and RowKey le ${`${invertedTime(since.toISOString())}~~`}`,
      max,
      "read the build history",
    );
    return rows.flatMap((row) => parseRecord(row.record));
  }

  async lastPowerState(builderKey: string): Promise<PowerEvent | undefined> {
    await this.ensureTable();
    const [last] = await this.rows<PowerEntity>(
      odata`PartitionKey eq ${powerPartition(builderKey)}`,
      1,
      "read the power history",
    );
    return last && (POWER_EVENTS as readonly string[]).includes(last.state)
      ? (last.state as PowerEvent)
      : undefined;
  }

  async recordPower(transition: PowerTransition): Promise<boolean> {
    const partitionKey = powerPartition(transition.builderKey);
    if ((await this.lastPowerState(transition.builderKey)) === transition.state) return false;
    const entity: PowerEntity = { ...transition };
    await callAzure("table", `record the power history of ${transition.builder}`, () =>
      this.client.upsertEntity(
        { partitionKey, rowKey: `${invertedTime(transition.at)}~${transition.state}`, ...entity },
        "Replace",
      ),
    );
    return true;
  }

  async powerSince(builderKey: string, since: Date): Promise<PowerTransition[]> {
    await this.ensureTable();
    const partitionKey = powerPartition(builderKey);
    const bound = invertedTime(since.toISOString());
    const [inWindow, before] = await Promise.all([
      this.rows<PowerEntity>(
        odata`PartitionKey eq ${partitionKey} and RowKey le ${`${bound}~~`}`,
        10_000,
        "read the power history",
      ),
      this.rows<PowerEntity>(
        odata`PartitionKey eq ${partitionKey} and RowKey gt ${`${bound}~~`}`,
        1,
        "read the power history",
      ),
    ]);
    return [...inWindow, ...before].flatMap((row) =>
      (POWER_EVENTS as readonly string[]).includes(row.state)
        ? [
            {
              builderKey: row.builderKey,
              builder: row.builder,
              state: row.state as PowerEvent,
              at: row.at,
              vmSize: row.vmSize,
            },
          ]
        : [],
    );
  }

  /** Up to `max` rows of a filter, in key order, across the service's pages. */
  private async rows<T extends object>(
    filter: string,
    max: number,
    what: string,
  ): Promise<(T & { rowKey: string })[]> {
    const rows: (T & { rowKey: string })[] = [];
    try {
      const pages = this.client
        .listEntities<T>({ queryOptions: { filter } })
        .byPage({ maxPageSize: Math.min(max, 1000) });
      for await (const page of pages) {
        for (const entity of page) {
          rows.push({ ...entity, rowKey: entity.rowKey ?? "" });
          if (rows.length >= max) return rows;
        }
      }
    } catch (error) {
      throw toTypedError(error, "table", what);
    }
    return rows;
  }
}

/** A record column as written by `recordBuild`; a row edited by hand into something else is left out. */
function parseRecord(text: string): BuildHistoryRecord[] {
  try {
    const value = JSON.parse(text) as BuildHistoryRecord;
    return typeof value === "object" && value !== null && typeof value.buildId === "string" ? [value] : [];
  } catch {
    return [];
  }
}
