/**
 * Version 5: the registry first (issue 10, item 1). The real activities read the local registry
 * through its ACR-faithful login server (token exchange included) before any lease or VM call.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_EVENTS, builderKey } from "../../src/core/buildInput.js";
import { BUILDER_NOT_TOUCHED } from "../../src/orchestration/registryFirst.js";
import { pushImage } from "../azure/registryImages.js";
import {
  arm,
  appRef,
  driverFor,
  images,
  leases,
  newInput,
  REG,
  runBuild,
  scenario,
  succeed,
  useLocalCloud,
  vmRequests,
} from "./support.js";

useLocalCloud();

const hex = (c: string) => c.repeat(64);

describe("registry first (orchestrator version 5)", () => {
  it("an unchanged tree: no lease, no VM start, no run command; the image is deployed by digest", async () => {
    const s = scenario({ imageRepository: "team/first" });
    const sourceDigest = `sha256:${hex("d")}`;
    const pushed = await pushImage(images.url, "team/first", `src-${hex("d")}`, "unchanged");
    const armBefore = s.arm.requests.length;
    const exchangesBefore = images.frontRequests.exchange;
    const input = newInput(s, { sourceDigest });
    // No SourceUploaded event is ever raised: the build does not wait for the upload.
    const instance = await driverFor(s, input).run();
    assert.equal(instance.runtimeStatus, "Completed", JSON.stringify(instance.output));
    const status = instance.output as BuildStatus;

    assert.equal(status.phase, "succeeded");
    assert.equal(status.registryCheck?.sourceImage, "present");
    assert.match(status.registryCheck?.message ?? "", /builder not touched/);
    for (const name of ["lease", "builder", "source", "build"]) {
      const step = status.steps.find((one) => one.name === name);
      assert.equal(step?.state, "skipped", name);
      assert.equal(step?.reason, BUILDER_NOT_TOUCHED, name);
    }
    assert.equal(status.steps.find((one) => one.name === "deploy")?.state, "succeeded");
    assert.equal(arm.getContainerApp(appRef(s))?.images.web, `${REG}/team/first@${pushed}`);
    // Nothing on the VM: no GET, no start, no run command.
    assert.deepEqual(vmRequests(s, "POST", /./), []);
    assert.deepEqual(vmRequests(s, "PUT", /./), []);
    const vmCalls = s.arm.requests
      .slice(armBefore)
      .filter((r) => r.path.toLowerCase().includes(`/virtualmachines/${s.vm.vmName.toLowerCase()}`));
    assert.deepEqual(vmCalls, [], "the builder was not touched");
    // No lease row was ever written for this builder.
    assert.equal((await leases.read(builderKey(s.vm)))?.record.holder, undefined);
    assert.equal((await leases.read(builderKey(s.vm)))?.record.queue.length ?? 0, 0);
    assert.ok(images.frontRequests.exchange > exchangesBefore, "read through ACR's token exchange");
  });

  it("an unchanged tree with --no-deploy ends without touching the builder or the app", async () => {
    const s = scenario({ imageRepository: "team/nodeploy" });
    await pushImage(images.url, "team/nodeploy", `src-${hex("e")}`);
    const input = newInput(s, { sourceDigest: `sha256:${hex("e")}`, deploy: false });
    const instance = await driverFor(s, input).run();
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "succeeded");
    assert.equal(status.steps.find((one) => one.name === "deploy")?.state, "skipped");
    assert.equal(arm.getContainerApp(appRef(s))?.images.web, "registry.example.test/team/app:old");
    assert.deepEqual(vmRequests(s, "POST", /./), []);
  });

  it("a changed tree builds as before, and shows base hit/miss before the VM is up", async () => {
    for (const [repository, base] of [
      ["team/basehit", "hit"],
      ["team/basemiss", "miss"],
    ] as const) {
      const s = scenario({ imageRepository: repository });
      const input = newInput(s, { sourceDigest: `sha256:${hex("f")}` });
      if (base === "hit") await pushImage(images.url, `${repository}-base`, input.baseKey);
      arm.setRunCommandExecutor(succeed(() => ({ image: `${REG}/${repository}:${input.buildId}` })));
      const seen: BuildStatus[] = [];
      const { status } = await runBuild(
        s,
        input,
        "V3",
        (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
        { onUpdate: (update) => seen.push(update.customStatus as BuildStatus) },
      );
      assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
      // The first status that names a started builder already carries the registry's answer.
      const beforeVm = seen.find((one) =>
        one?.steps?.some((step) => step.name === "builder" && step.state === "running"),
      );
      assert.equal(beforeVm?.registryCheck?.sourceImage, "absent");
      assert.equal(beforeVm?.registryCheck?.base, base);
      assert.match(
        beforeVm?.registryCheck?.message ?? "",
        new RegExp(`base: ${base}; expected duration: unknown`),
      );
      assert.equal(vmRequests(s, "PUT", /runCommands/i).length, 1, "the build ran");
    }
  });

  it("expects what the environment's last builds took, before the VM is up", async () => {
    const s = scenario({ imageRepository: "team/expect" });
    const durations: number[] = [];
    let last: BuildStatus | undefined;
    for (const c of ["1", "2"]) {
      const input = newInput(s, { sourceDigest: `sha256:${hex(c)}` });
      await pushImage(images.url, "team/expect-base", input.baseKey);
      arm.setRunCommandExecutor(succeed(() => ({ image: `${REG}/team/expect:${input.buildId}` })));
      const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
      assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
      durations.push(Date.parse(status.timings.endedAt!) - Date.parse(status.timings.createdAt));
      last = status;
    }
    // The first had nothing to go by; the second expects what the first took (same base outcome).
    assert.equal(last?.registryCheck?.expectedMs, durations[0]);
    assert.match(
      last?.registryCheck?.expectedDuration ?? "",
      /^about \d+ (s|min) \(the last build with a base hit\)$/,
    );
    assert.match(last?.registryCheck?.message ?? "", /expected duration: about /);
    // A build that never ran the builder (the image was there) adds nothing.
    const recent = await leases.recentBuilds(s.env.name);
    assert.equal(recent.length, 2);
  });
});
