// One linter for the whole tree. Type-aware rules catch un-awaited promises, which in durable and
// async I/O code are silent bugs.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "node_modules/**",
      "dist/**",
      ".deploy/**",
      ".tools/**",
      ".sim/**",
      "coverage/**",
      "**/*.js",
      "**/*.mjs",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            {
              from: "package",
              package: "node:test",
              name: ["describe", "it", "test", "suite", "before", "after"],
            },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-syntax": [
        "error",
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: "Read settings through src/config only.",
        },
      ],
    },
  },
  {
    // Production code (deployed to Azure, or run on a developer's machine) never reaches into the
    // stand-ins for Azure: the local cloud is a separate package that only tests and the sim use.
    files: ["src/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["@fast-build/local-cloud", "@fast-build/local-cloud/*", "**/packages/**", "**/sim/**"],
              message: "The local cloud stands in for Azure; production code must not import it.",
            },
          ],
        },
      ],
    },
  },
  {
    // Orchestrator code is replayed: it must be deterministic and do no I/O of its own.
    files: ["src/orchestration/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["node:*", "fs", "http", "https", "child_process", "crypto"],
              message: "No I/O in orchestrations.",
            },
            {
              group: ["@azure/arm-*", "@azure/storage-*", "@azure/data-tables", "@azure/identity"],
              message: "Orchestrations call activities, not SDKs.",
            },
            {
              group: ["**/azure/**", "**/activities/**"],
              message: "Orchestrations call activities by name only.",
            },
            {
              group: ["@fast-build/local-cloud", "@fast-build/local-cloud/*", "**/packages/**", "**/sim/**"],
              message: "The local cloud stands in for Azure; production code must not import it.",
            },
          ],
        },
      ],
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: "Use context.df.currentUtcDateTime." },
        { object: "Math", property: "random", message: "Use context.df.newGuid()." },
      ],
      "no-restricted-globals": [
        "error",
        { name: "fetch", message: "No I/O in orchestrations." },
        { name: "setTimeout", message: "Use durable timers." },
      ],
    },
  },
  {
    files: [
      "src/config/**/*.ts",
      "test/**/*.ts",
      "bench/**/*.ts",
      "scripts/**/*.ts",
      "sim/**/*.ts",
      "packages/local-cloud/**/*.ts",
    ],
    rules: { "no-restricted-syntax": "off" },
  },
  {
    files: ["test/**/*.ts", "packages/local-cloud/test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
    },
  },
);
