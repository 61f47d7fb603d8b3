/**
 * Recorded build orchestrations, one JSON file each, under `test/fixtures/histories/<release>/`:
 * what `npm run record-histories` writes (recordHistories.ts) and what histories.test.ts replays
 * on the current orchestrator. One release folder per deployed version: an instance started on
 * any of them may still be in flight when the next one is deployed.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import type { RecordedRun } from "@fast-build/local-cloud/durable/replayCheck";

export const HISTORIES_DIR = fileURLToPath(new URL("../fixtures/histories/", import.meta.url));

/** The callback token every recorded input carries: a fixed fake, never a real one. */
export const FIXTURE_CALLBACK_TOKEN = "fixture-callback-token-not-a-secret-000000";

const historyEventSchema = z
  .object({
    EventType: z.number().int(),
    EventId: z.number().int(),
    Timestamp: z.string(),
    IsPlayed: z.boolean(),
    Name: z.string().optional(),
    Input: z.string().optional(),
    Result: z.string().optional(),
    TaskScheduledId: z.number().int().optional(),
    TimerId: z.number().int().optional(),
    FireAt: z.string().optional(),
    Reason: z.string().optional(),
    Details: z.string().optional(),
  })
  .strict();

export const historyFixtureSchema = z
  .object({
    /** The package version that recorded it (the folder's name). */
    release: z.string(),
    name: z.string(),
    /** What the build did, in words. */
    scenario: z.string(),
    orchestrator: z.string(),
    schema: z.enum(["V1", "V3"]),
    instanceId: z.string(),
    input: z.unknown(),
    runtimeStatus: z.enum(["Completed", "Failed"]),
    output: z.unknown(),
    customStatus: z.unknown(),
    /** The cuts a deploy can land on (`inFlightCuts`) and what arrives there. */
    inFlight: z.array(z.object({ cut: z.number().int(), arriving: z.string() }).strict()),
    history: z.array(historyEventSchema),
  })
  .strict();
export type HistoryFixture = z.infer<typeof historyFixtureSchema>;

export function recordedRun(fixture: HistoryFixture): RecordedRun {
  return {
    name: `${fixture.release}/${fixture.name}`,
    instanceId: fixture.instanceId,
    input: fixture.input,
    schema: fixture.schema,
    history: fixture.history,
    runtimeStatus: fixture.runtimeStatus,
    output: fixture.output,
  };
}

/** Every fixture of every release folder; a file that is not one says which and why. */
export async function readHistoryFixtures(dir = HISTORIES_DIR): Promise<HistoryFixture[]> {
  const fixtures: HistoryFixture[] = [];
  for (const release of (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory())) {
    const files = (await readdir(join(dir, release.name))).filter((f) => f.endsWith(".json")).sort();
    for (const file of files) {
      const path = join(dir, release.name, file);
      const parsed = historyFixtureSchema.safeParse(JSON.parse(await readFile(path, "utf8")));
      if (!parsed.success) {
        throw new Error(
          `${path} is not a recorded history (${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}); ` +
            "restore it from git, or record the release again with `npm run record-histories`",
        );
      }
      fixtures.push(parsed.data);
    }
  }
  return fixtures.sort((a, b) => a.release.localeCompare(b.release) || a.name.localeCompare(b.name));
}
