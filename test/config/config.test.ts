import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig, redact, redactConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/core/errors.js";
import { defaultExtractLimits } from "../../src/core/extractLimits.js";
import { ENVIRONMENT, MINIMAL_SETTINGS } from "./settings.js";

const minimal = MINIMAL_SETTINGS;

describe("loadConfig", () => {
  it("applies defaults to a minimal configuration", () => {
    const config = loadConfig(minimal);
    assert.deepEqual(config.arm.compute, { endpoint: "https://management.azure.com", audience: undefined });
    assert.deepEqual(config.arm.containerApps, {
      endpoint: "https://management.azure.com",
      audience: undefined,
    });
    assert.equal(config.arm.computeProfile, "latest");
    assert.equal(config.builds.idleShutdownMinutes, 30);
    assert.equal(config.environments.dev?.name, "dev");
  });

  it("derives the extraction limits from the settings: expanded bytes as a factor of the upload limit", () => {
    assert.deepEqual(loadConfig(minimal).builds.extractLimits, defaultExtractLimits());
    const config = loadConfig({
      ...minimal,
      FASTBUILD_MAX_UPLOAD_BYTES: "1000",
      FASTBUILD_EXTRACT_MAX_BYTES_FACTOR: "3",
      FASTBUILD_EXTRACT_MAX_LINKS: "0",
      FASTBUILD_EXTRACT_MAX_LINK_DEPTH: "8",
    });
    assert.equal(config.builds.extractLimits.maxBytes, 3000);
    assert.equal(config.builds.extractLimits.maxLinks, 0);
    assert.equal(config.builds.extractLimits.maxLinkDepth, 8);
  });

  it("reports every bad extraction limit together", () => {
    assert.throws(
      () =>
        loadConfig({
          ...minimal,
          FASTBUILD_EXTRACT_MAX_BYTES_FACTOR: "0",
          FASTBUILD_EXTRACT_MAX_FILES: "many",
          FASTBUILD_EXTRACT_MAX_PATH_BYTES: "5000",
          FASTBUILD_EXTRACT_MAX_LINK_DEPTH: "1.5",
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const named = error.problems.map((problem) => problem.split(":")[0]).sort();
        assert.deepEqual(named, [
          "FASTBUILD_EXTRACT_MAX_BYTES_FACTOR",
          "FASTBUILD_EXTRACT_MAX_FILES",
          "FASTBUILD_EXTRACT_MAX_LINK_DEPTH",
          "FASTBUILD_EXTRACT_MAX_PATH_BYTES",
        ]);
        return true;
      },
    );
  });

  it("reports every problem in one error", () => {
    assert.throws(
      () =>
        loadConfig({
          FASTBUILD_ENVIRONMENTS: JSON.stringify({ dev: { subscriptionId: "nope" } }),
          FASTBUILD_UPLOAD_SAS_MINUTES: "45",
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.ok(error.problems.some((p) => p.startsWith("FASTBUILD_UPLOAD_SAS_MINUTES")));
        assert.ok(error.problems.some((p) => p.startsWith("FASTBUILD_ENVIRONMENTS.dev.subscriptionId")));
        return true;
      },
    );
    assert.throws(
      () => loadConfig({ FASTBUILD_ENVIRONMENTS: JSON.stringify({ dev: { subscriptionId: "nope" } }) }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const text = error.problems.join("\n");
        assert.match(text, /dev\.subscriptionId/);
        assert.match(text, /dev\.builderVm/);
        assert.match(text, /AzureWebJobsStorage or FASTBUILD_BLOB_ENDPOINT/);
        return true;
      },
    );
  });

  it("rejects environments that are not JSON, with the setting's name", () => {
    assert.throws(
      () => loadConfig({ ...minimal, FASTBUILD_ENVIRONMENTS: "{dev:" }),
      /FASTBUILD_ENVIRONMENTS: not valid JSON/,
    );
  });

  it("refuses an upper-case registry at start and says which spelling to use", () => {
    const upper = JSON.stringify({ dev: { ...ENVIRONMENT, registry: "MyReg.azurecr.io" } });
    assert.throws(
      () => loadConfig({ ...minimal, FASTBUILD_ENVIRONMENTS: upper }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.problems.join("\n"), /dev\.registry: .*use "myreg\.azurecr\.io".*lower-case/);
        return true;
      },
    );
  });

  it("refuses a plain-http callback URL that the builder would refuse, except to loopback", () => {
    assert.throws(
      () => loadConfig({ ...minimal, FASTBUILD_PUBLIC_BASE_URL: "http://myapp.example.com" }),
      /FASTBUILD_PUBLIC_BASE_URL: an https URL/,
    );
    assert.equal(
      loadConfig({ ...minimal, FASTBUILD_PUBLIC_BASE_URL: "http://127.0.0.1:7071/" }).publicBaseUrl,
      "http://127.0.0.1:7071",
    );
  });

  it("gives compute and Container Apps their own endpoint and audience (Azure Stack Hub has no Container Apps)", () => {
    const config = loadConfig({
      ...minimal,
      FASTBUILD_COMPUTE_ENDPOINT: "https://management.local.azurestack.external/",
      FASTBUILD_COMPUTE_AUDIENCE: "https://management.azurestack.example/1234",
      FASTBUILD_COMPUTE_PROFILE: "2020-09-01-hybrid",
    });
    assert.deepEqual(config.arm.compute, {
      endpoint: "https://management.local.azurestack.external",
      audience: "https://management.azurestack.example/1234",
    });
    assert.deepEqual(config.arm.containerApps, {
      endpoint: "https://management.azure.com",
      audience: undefined,
    });
  });

  it("keeps the old FASTBUILD_ARM_ENDPOINT working as the compute endpoint only", () => {
    const config = loadConfig({ ...minimal, FASTBUILD_ARM_ENDPOINT: "https://arm.stack.example" });
    assert.equal(config.arm.compute.endpoint, "https://arm.stack.example");
    assert.equal(config.arm.containerApps.endpoint, "https://management.azure.com");
  });

  it("reports the old and the new compute endpoint setting disagreeing, with the other problems", () => {
    assert.throws(
      () =>
        loadConfig({
          ...minimal,
          FASTBUILD_ARM_ENDPOINT: "https://one.example",
          FASTBUILD_COMPUTE_ENDPOINT: "https://two.example",
          FASTBUILD_CONTAINERAPPS_AUDIENCE: "https://management.azure.com/.default",
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const text = error.problems.join("\n");
        assert.match(text, /FASTBUILD_CONTAINERAPPS_AUDIENCE: the audience without '\/\.default'/);
        assert.match(text, /FASTBUILD_ARM_ENDPOINT: the old name of FASTBUILD_COMPUTE_ENDPOINT/);
        return true;
      },
    );
  });

  it("reads the VM rates, the currency and the history table, with defaults", () => {
    assert.deepEqual(loadConfig(minimal).history, { table: "buildhistory", vmRates: {}, currency: "USD" });
    const config = loadConfig({
      ...minimal,
      FASTBUILD_VM_RATES: '{"Standard_D4s_v5":{"perHour":0.192,"diskPerHour":0.0065}}',
      FASTBUILD_COST_CURRENCY: "EUR",
      FASTBUILD_HISTORY_TABLE: "history2",
    });
    assert.deepEqual(config.history, {
      table: "history2",
      vmRates: { Standard_D4s_v5: { perHour: 0.192, diskPerHour: 0.0065 } },
      currency: "EUR",
    });
  });

  for (const [what, settings, named] of [
    ["rates that are not JSON", { FASTBUILD_VM_RATES: "{oops" }, /FASTBUILD_VM_RATES: not valid JSON/],
    [
      "a rate without diskPerHour",
      { FASTBUILD_VM_RATES: '{"Standard_D4s_v5":{"perHour":1}}' },
      /FASTBUILD_VM_RATES\.Standard_D4s_v5\.diskPerHour/,
    ],
    [
      "a negative rate",
      { FASTBUILD_VM_RATES: '{"Standard_D4s_v5":{"perHour":-1,"diskPerHour":0}}' },
      /FASTBUILD_VM_RATES\.Standard_D4s_v5\.perHour/,
    ],
    [
      "a size that is not one",
      { FASTBUILD_VM_RATES: '{"a b":{"perHour":1,"diskPerHour":0}}' },
      /a VM size such as Standard_D4s_v5/,
    ],
    [
      "a currency that is not a code",
      { FASTBUILD_COST_CURRENCY: "dollars" },
      /FASTBUILD_COST_CURRENCY: a three-letter currency code/,
    ],
  ] as const) {
    it(`refuses ${what} at start, naming the setting`, () => {
      assert.throws(
        () => loadConfig({ ...minimal, ...settings }),
        (error) => error instanceof ConfigError && error.problems.some((p) => named.test(p)),
      );
    });
  }

  it("rejects an unknown compute profile", () => {
    assert.throws(
      () => loadConfig({ ...minimal, FASTBUILD_COMPUTE_PROFILE: "2019-03-01-hybrid" }),
      ConfigError,
    );
  });
});

describe("redact", () => {
  it("hides account keys and SAS signatures", () => {
    assert.equal(
      redact("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=x"),
      "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=***;EndpointSuffix=x",
    );
    assert.equal(redact("https://a/b?sv=1&sig=abc%2Bdef&se=2"), "https://a/b?sv=1&sig=***&se=2");
    const config = loadConfig({ ...minimal, AzureWebJobsStorage: "AccountName=a;AccountKey=secret" });
    assert.doesNotMatch(JSON.stringify(redactConfig(config)), /secret/);
  });
});

describe("redact: every form a secret takes in a log line (issue 9, item 5)", () => {
  // input | what must be gone | what stays
  const cases: [string, string, string][] = [
    ["https://a/b?sv=1&sig=abc%2Bdef&se=2", "abc%2Bdef", "sig=***"],
    ["url=https%3A%2F%2Fa%2Fb%3Fsv%3D1%26sig%3Dabc%252Bdef%26se%3D2", "abc%252Bdef", "sig%3D***%26se"],
    ['{"sig":"abc+def","sv":"1"}', "abc+def", '"sig":"***"'],
    ['{"callbackToken": "tok-123"}', "tok-123", '"callbackToken": "***"'],
    ["x-fastbuild-token: tok-456", "tok-456", "x-fastbuild-token: ***"],
    ["Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi", "Bearer ***"],
  ];
  for (const [input, secret, kept] of cases) {
    it(`hides ${JSON.stringify(input)}`, () => {
      const out = redact(input);
      assert.ok(!out.includes(secret), out);
      assert.ok(out.includes(kept), out);
    });
  }
});
