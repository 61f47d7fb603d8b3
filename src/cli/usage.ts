/**
 * What `fast-build --help` needs, and nothing more: the usage text and the flag table, with the
 * argv parse every command shares (src/cli/args.ts goes on from it to commands and build ids).
 * No imports beyond node:util, so the entry (src/cli/main.ts) can answer `--help` before loading
 * any command: those bring the schemas (zod), the storage SDK and the archiver.
 */
import { parseArgs } from "node:util";

export const USAGE = `usage: fast-build <command> [options]

commands:
  init                  write fast-build.toml from what it detects (Cargo workspace, binaries,
                        rust-toolchain.toml, the project's own Dockerfiles, lock files); offline
  plan                  say what dev would send and build, offline: files, bytes, what is left out
                        and why, the source digest and base key; with --api, what the registry has
  dev                   send the current folder (only the files the store lacks), build it on the
                        builder VM, deploy it
  follow <build-id>     follow a build from now on: its log, phases and summary; Ctrl-C leaves it
                        running (exit code: as for dev, by the build's final phase)
  status <build-id>     print the build's status once
  logs <build-id>       print the build's log
  cancel <build-id>     cancel the build (exit 0 also when it had already ended)
  builders              list the builder VMs: power state, lease holder, queue, idle shutdown
  warm <env>            start the environment's builder VM now (e.g. from a pre-push hook), so
                        the next build does not wait for it; the idle shutdown still applies
  promote <from> <to>   deploy the image <from> runs (or --build ID's) to <to>, by digest: ACR
                        imports it into <to>'s registry, no rebuild; waits for an approval when
                        <to> requires one, then for the new revision to be healthy
  approve <id>          approve a promotion waiting for you (an approver of its environment)
  reject <id>           reject it (--reason TEXT); nothing is deployed
  rollback <env>        deploy the previous healthy image again (or --to REVISION|BUILD), by
                        digest, with the same health wait; refused when there is nothing to go to
  promotion <id>        print a promotion's or rollback's status once
  history               recent builds, newest first: when, who (branch@commit, author), outcome,
                        time per phase, image digest, revision
  costs                 builder VM minutes (running) and disk minutes (deallocated, hibernated)
                        per day and per build, priced by the app's FASTBUILD_VM_RATES

dev options:
  --env NAME        environment to build for (or FASTBUILD_ENV)
  --dir PATH        project folder (default: the current folder)
  --no-deploy       build and push the image, do not deploy it
  --rebuild-base    rebuild the dependency base image even if cached
  --json            print the final build status as JSON on stdout
  --no-follow       return after the upload, do not wait for the build
  --archive         send one archive of the whole tree instead of only the changed files
  --dry-run         print what \`fast-build plan\` prints and send nothing (no API call)

plan options:
  --dir PATH        project folder (default: the current folder)
  --archive         plan the one-archive upload: its digest and bytes
  --json            print the plan as one JSON object on stdout
  --api URL         also ask this API (with --env NAME) whether the registry has the image or
                    the base, and so what the build would do; without it, no request is sent
  --env NAME        with --api: the environment whose registry is asked (or FASTBUILD_ENV)
  --rebuild-base    as for dev: the base would be rebuilt even if the registry has it

promote / rollback options:
  --build ID        promote: the image build ID deployed to <from> (default: what <from> runs)
  --to X            rollback: a revision name of the app, or a build id that deployed there
  --reason TEXT     reject: why (shown in the promotion's status)
  --json            print the final status (or the API's answer) as JSON on stdout
  --no-follow       print the id and return; follow later with \`fast-build promotion <id>\`

init options:
  --dir PATH        project folder (default: the current folder)
  --binary NAME     the binary, when the workspace has several (default: default-run, or the only one)
  --force           replace an existing fast-build.toml
  --json            print what was detected and written as JSON on stdout

other options:
  --json            status, builders, warm, approve, reject, promotion, history, costs: print the
                    API's JSON on stdout
  --follow          logs: keep printing until the build has ended
  --env NAME        history, costs: only this environment (default: every one)
  --limit N         history: how many builds, 1-1000 (default 20)
  --days N          costs: how many days back, 1-90 (default 7)

every command:
  --api URL         function app URL (or FASTBUILD_API_URL; plan asks only with --api);
                    key in FASTBUILD_API_KEY; a signed-in user's token in FASTBUILD_API_TOKEN
  -h, --help        show this help

A build id is what \`fast-build dev\` prints, e.g. 20260314092653-3f9a0c1d2e.
exit codes: 0 succeeded, 1 failed, 2 bad input or settings (or no such build or environment),
            3 cancelled (a promotion rejected, a build superseded), 4 timed out (also: nobody approved in time),
            5 refused (nothing to roll back to, a deploy under way, not an approver), 130 interrupted`;

/** The flags of every command; which command takes which is in src/cli/args.ts. */
export const OPTIONS = {
  env: { type: "string" },
  api: { type: "string" },
  dir: { type: "string" },
  // Node 20's parseArgs has no `allowNegative`: the negations are flags of their own.
  "no-deploy": { type: "boolean" },
  "rebuild-base": { type: "boolean" },
  json: { type: "boolean" },
  "no-follow": { type: "boolean" },
  archive: { type: "boolean" },
  "dry-run": { type: "boolean" },
  follow: { type: "boolean" },
  build: { type: "string" },
  to: { type: "string" },
  reason: { type: "string" },
  help: { type: "boolean", short: "h" },
  force: { type: "boolean" },
  binary: { type: "string" },
  limit: { type: "string" },
  days: { type: "string" },
} as const;

/** argv (without node and script) by the flag table, strictly: an unknown flag throws. */
export function parseArgv(argv: readonly string[]) {
  return parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: OPTIONS });
}

/**
 * Whether argv asks for the usage: exactly when `parseCommand` would answer `{ command: "help" }`
 * (the same parse, so `--bogus --help` is still an error, reported by the full parse).
 */
export function isHelpRequest(argv: readonly string[]): boolean {
  try {
    const { values, positionals } = parseArgv(argv);
    return values.help === true || positionals[0] === "help";
  } catch {
    return false;
  }
}
