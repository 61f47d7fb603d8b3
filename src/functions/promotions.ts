/**
 * The promotion and rollback API (issue 11, items 3 and 4):
 * - `POST /api/promotions` `{from, to, buildId?}`: which image (the build's deployed digest, or what
 *   `from` runs now), checked here; 202 with the promotion's id, or a 4xx saying why nothing started.
 * - `GET /api/promotions/{id}`: its status (the build status shape plus `deploy`: kind, image,
 *   approval, import), for promotions and rollbacks alike.
 * - `POST /api/promotions/{id}/approve|reject` `{reason?}`: by an approver of the target
 *   environment, as App Service authentication names them (identity.ts).
 * - `POST /api/environments/{env}/rollback` `{to?}`: back to the previous healthy image, or to a
 *   revision or build; 409 with the reason when there is nothing to go back to.
 *
 * While a deploy is under way on the target app (its latest revision is not its ready one: a
 * build's or another promotion's revision is starting), promote and rollback answer 409: they never
 * race a deploy they can see. Azure orders updates of one app in any case (409 while one runs,
 * which the deploy's retries wait out), and every deploy reports on its own revision.
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import type { EnvironmentConfig } from "../config/index.js";
import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError } from "../core/errors.js";
import { quoted } from "../core/logText.js";
import {
  chooseRollback,
  createDeployId,
  decisionRequestSchema,
  deployIdSchema,
  digestReference,
  mayDecide,
  PROMOTION_EVENTS,
  promoteRequestSchema,
  registryResourceId,
  rollbackRequestSchema,
  type DecisionEvent,
  type DeployInput,
} from "../core/promotion.js";
import { buildIdSchema } from "../core/buildInput.js";
import type { ContainerAppRef, ContainerAppsGateway, RevisionHistoryGateway } from "../core/ports.js";
import { getDeps } from "./deps.js";
import { deployInstances, requireDeploy } from "./deployInstances.js";
import {
  apiHandler,
  buildLog,
  json,
  knownEnvironment,
  parseWith,
  readJson,
  routeEnvironment,
} from "./http.js";
import { buildInstances, requireBuild } from "./instances.js";
import { callerIdentity, requireCaller } from "./identity.js";

/** The build orchestrator version whose deploy steps promotions and rollbacks run (deploy.ts). */
const DEPLOY_STEPS_VERSION = 6;

const appOf = (env: EnvironmentConfig): ContainerAppRef => ({
  subscriptionId: env.subscriptionId,
  resourceGroup: env.containerAppResourceGroup ?? env.resourceGroup,
  appName: env.containerApp,
});

function gateways(deps: Awaited<ReturnType<typeof getDeps>>): {
  apps: ContainerAppsGateway;
  revisions: RevisionHistoryGateway;
} {
  if (!deps.apps || !deps.revisions) throw new Error("the Container Apps gateways are not wired");
  return { apps: deps.apps, revisions: deps.revisions };
}

/**
 * 409 while the app's newest revision is still starting (not its ready one, and neither failed
 * nor unhealthy): a deploy is under way there. A newest revision that failed is no deploy under
 * way: rolling back is what it calls for.
 */
async function requireSettled(apps: ContainerAppsGateway, env: EnvironmentConfig) {
  const app = await apps.getApp(appOf(env));
  const latest = app.latestRevisionName;
  if (latest && latest !== app.latestReadyRevisionName) {
    const revision = await apps.getRevision(appOf(env), latest);
    if (revision.provisioningState === "Failed" || revision.healthState === "Unhealthy") return app;
    throw new ConflictError(
      `a deploy is under way in environment ${env.name}: revision ${latest} is ${revision.provisioningState}/${revision.healthState}, not ready yet`,
      {
        code: "DeployInProgress",
        hint: "Wait until the build or promotion deploying there has ended (fast-build status), then try again.",
      },
    );
  }
  return app;
}

/** The digest a succeeded build deployed to `env` (its status's deployment reference). */
async function buildDigest(context: InvocationContext, buildId: string, env: EnvironmentConfig) {
  const build = requireBuild(await buildInstances(context).get(buildId), buildId);
  if (build.input.environment !== env.name) {
    throw new ConflictError(
      `build ${buildId} was a build of ${build.input.environment}, not of ${env.name}`,
      {
        code: "BuildOfAnotherEnvironment",
        hint: `Promote from ${build.input.environment}, or give a build of ${env.name}.`,
      },
    );
  }
  const reference = digestReference(build.status.deployment?.reference);
  if (build.status.phase !== "succeeded" || !reference) {
    throw new ConflictError(`build ${buildId} did not deploy an image (phase ${build.status.phase})`, {
      code: "BuildNotDeployed",
      hint: "Only a build that succeeded and deployed its image can be promoted or rolled back to.",
    });
  }
  return reference;
}

async function startPromotionRun(
  request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  const deps = await getDeps();
  const body = parseWith(promoteRequestSchema, await readJson(request), "promotion request");
  const from = knownEnvironment(deps.config.environments, body.from);
  const to = knownEnvironment(deps.config.environments, body.to);
  for (const env of [from, to]) {
    if (!env.registryResource) {
      throw new InvalidInputError(`environment ${env.name} has no registryResource: ACR's import needs it`, {
        code: "RegistryResourceMissing",
        hint: `Add "registryResource": {"resourceGroup": …, "name": …} to ${env.name} in FASTBUILD_ENVIRONMENTS.`,
      });
    }
  }
  const { apps } = gateways(deps);
  let image: { registry: string; repository: string; digest: string };
  let source: string;
  if (body.buildId) {
    image = await buildDigest(context, body.buildId, from);
    source = `build ${body.buildId}`;
  } else {
    const app = await requireSettled(apps, from);
    const running = app.images[from.containerName];
    const reference = digestReference(running);
    if (!reference) {
      throw new ConflictError(
        `environment ${from.name} runs ${running ?? "nothing"} in container ${from.containerName}, not an image by digest`,
        {
          code: "NotDigestPinned",
          hint: "Deploy to it with fast-build first (it deploys by digest), or promote a build with --build.",
        },
      );
    }
    image = reference;
    source = `revision ${app.latestReadyRevisionName ?? "?"} of ${from.name}`;
  }
  if (image.registry !== from.registry) {
    throw new ConflictError(
      `the image ${image.repository}@${image.digest} is in ${image.registry}, not in ${from.name}'s registry ${from.registry}`,
      {
        code: "ImageNotInRegistry",
        hint: "Only images in the source environment's own registry are promoted.",
      },
    );
  }
  await requireSettled(apps, to);
  const now = deps.now();
  const requestedBy = callerIdentity(request, deps.config.auth);
  const input: DeployInput = {
    id: createDeployId("promote", now),
    kind: "promote",
    environment: to.name,
    from: from.name,
    createdAt: now.toISOString(),
    ...(requestedBy ? { requestedBy } : {}),
    image: { repository: image.repository, digest: image.digest, source },
    sourceRegistryResourceId: registryResourceId({
      subscriptionId: from.registryResource!.subscriptionId ?? from.subscriptionId,
      resourceGroup: from.registryResource!.resourceGroup,
      registryName: from.registryResource!.name,
    }),
    ...(to.approval
      ? {
          approval: {
            required: to.approval.required,
            approvers: to.approval.approvers,
            timeoutMs: to.approval.timeoutHours * 3_600_000,
          },
        }
      : {}),
    deployStepsVersion: DEPLOY_STEPS_VERSION,
  };
  await deployInstances(context).start(input);
  buildLog(context, input.id).info(`promotion of ${image.digest} from ${from.name} to ${to.name} started`);
  return json(202, {
    promotionId: input.id,
    from: from.name,
    to: to.name,
    image: `${image.registry}/${image.repository}@${image.digest}`,
    source,
    approvalRequired: to.approval?.required ?? false,
    statusUrl: `/api/promotions/${input.id}`,
  });
}

function routeDeployId(request: HttpRequest): string {
  const id = request.params.id ?? "";
  const parsed = deployIdSchema.safeParse(id);
  if (!parsed.success) {
    throw new InvalidInputError(`${quoted(id, 80)} is not a promotion or rollback id.`, {
      code: "InvalidPromotionId",
      hint: "Use the id fast-build promote (p-…) or fast-build rollback (r-…) printed.",
    });
  }
  return parsed.data;
}

async function getPromotionRun(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const id = routeDeployId(request);
  const found = requireDeploy(await deployInstances(context).get(id), id);
  return json(200, found.status);
}

function decide(approved: boolean) {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    const id = routeDeployId(request);
    const body = parseWith(decisionRequestSchema, await readJson(request), "decision");
    const deps = await getDeps();
    const instances = deployInstances(context);
    const found = requireDeploy(await instances.get(id), id);
    const caller = requireCaller(request, deps.config.auth);
    const approval = found.status.deploy.approval;
    if (found.input.kind !== "promote" || !approval?.required) {
      throw new ConflictError(`${id} needs no approval`, {
        code: "NoApprovalRequired",
        hint: "Only promotions into an environment with approval.required wait for a decision.",
      });
    }
    if (found.ended || approval.state !== "pending") {
      throw new ConflictError(
        `${id} is not waiting for a decision (approval ${approval.state}, phase ${found.status.phase})`,
        {
          code: "NotAwaitingApproval",
          hint: `fast-build promotion ${id} shows what became of it.`,
        },
      );
    }
    const allowed = mayDecide(approval.approvers, caller);
    if (!allowed.ok)
      throw new ForbiddenError(allowed.error.message, { code: allowed.error.code, hint: allowed.error.hint });
    // Four eyes: whoever asked for the promotion cannot also approve it (they may still reject it).
    const requester = found.input.requestedBy;
    if (approved && requester && requester.name.toLowerCase() === caller.name.toLowerCase()) {
      throw new ForbiddenError(`${caller.name} requested this promotion and cannot also approve it`, {
        code: "SelfApproval",
        hint: `Ask another approver: ${approval.approvers.filter((a) => a.toLowerCase() !== caller.name.toLowerCase()).join(", ") || "(none other configured)"}.`,
      });
    }
    const event: DecisionEvent = {
      approved,
      by: caller,
      at: deps.now().toISOString(),
      ...(body?.reason ? { reason: body.reason } : {}),
    };
    await instances.raise(id, PROMOTION_EVENTS.decision, event);
    buildLog(context, id).info(`${approved ? "approved" : "rejected"} by ${quoted(caller.name, 200)}`);
    return json(202, {
      promotionId: id,
      decision: approved ? "approved" : "rejected",
      by: caller,
      statusUrl: `/api/promotions/${id}`,
    });
  };
}

async function startRollbackRun(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const deps = await getDeps();
  const env = routeEnvironment(request, deps.config.environments);
  const body = parseWith(rollbackRequestSchema, await readJson(request), "rollback request") ?? {};
  const { apps, revisions } = gateways(deps);
  const app = await requireSettled(apps, env);
  const current = app.images[env.containerName];
  const listed = (await revisions.listRevisions(appOf(env))).map((r) => ({
    name: r.name,
    createdTime: r.createdTime,
    healthState: r.healthState,
    provisioningState: r.provisioningState,
    image: r.images[env.containerName],
  }));
  let wanted: { revision?: string; digest?: string } = {};
  if (body.to !== undefined) {
    // A build id names a build; anything else is a revision name of this app.
    const isBuild = buildIdSchema.safeParse(body.to).success && !body.to.includes("--");
    wanted = isBuild ? { digest: (await buildDigest(context, body.to, env)).digest } : { revision: body.to };
  }
  const choice = chooseRollback(listed, current, wanted);
  if (!choice.ok) {
    const details = { code: choice.error.code, hint: choice.error.hint };
    throw choice.error.code === "RevisionNotFound"
      ? new NotFoundError(choice.error.message, details)
      : new ConflictError(choice.error.message, details);
  }
  const reference = digestReference(choice.image)!;
  if (reference.registry !== env.registry) {
    throw new ConflictError(
      `revision ${choice.revision} ran an image of ${reference.registry}, not of ${env.registry}`,
      {
        code: "ImageNotInRegistry",
        hint: "Roll back to a revision that ran an image of this environment's registry.",
      },
    );
  }
  const now = deps.now();
  const requestedBy = callerIdentity(request, deps.config.auth);
  const input: DeployInput = {
    id: createDeployId("rollback", now),
    kind: "rollback",
    environment: env.name,
    createdAt: now.toISOString(),
    ...(requestedBy ? { requestedBy } : {}),
    image: { repository: choice.repository, digest: choice.digest, source: `revision ${choice.revision}` },
    deployStepsVersion: DEPLOY_STEPS_VERSION,
  };
  await deployInstances(context).start(input);
  buildLog(context, input.id).info(
    `rollback of ${env.name} to ${choice.digest} (revision ${choice.revision}) started`,
  );
  return json(202, {
    rollbackId: input.id,
    environment: env.name,
    from: current,
    image: choice.image,
    revision: choice.revision,
    statusUrl: `/api/promotions/${input.id}`,
  });
}

/** The handlers `register.ts` routes to (tests call them with their own request and context). */
export const startPromotion = apiHandler(startPromotionRun);
export const getPromotion = apiHandler(getPromotionRun);
export const approvePromotion = apiHandler(decide(true));
export const rejectPromotion = apiHandler(decide(false));
export const startRollback = apiHandler(startRollbackRun);
