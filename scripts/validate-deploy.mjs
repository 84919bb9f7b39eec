#!/usr/bin/env node
// Offline validation of rendered Kubernetes manifests (no cluster needed):
//   kubectl kustomize deploy/k8s/overlays/prod | node scripts/validate-deploy.mjs
// - Kubernetes objects are validated against the Kubernetes OpenAPI schemas (npm kubernetes-models, which validates
//   every field with the upstream JSON schemas);
// - Dapr objects (Component, Configuration, Resiliency, Subscription) are checked against their spec fields: known
//   keys only, required keys present, references between resiliency targets and policies resolvable.
// Prints one line per object and exits non-zero on the first run with any error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, ".tools", "npm", "node_modules");
const { parseAllDocuments } = createRequire(join(modules, "_"))("yaml");

const errors = [];
const fail = (where, message) => errors.push(`${where}: ${message}`);

async function validateKubernetes(obj, where) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  const file = join(modules, "kubernetes-models", group || "", version, `${obj.kind}.js`);
  let Model;
  try {
    Model = (await import(pathToFileURL(file).href))[obj.kind];
  } catch {
    fail(where, `no Kubernetes schema for ${obj.apiVersion} ${obj.kind}`);
    return;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    fail(where, e.message.replace(/\s+/g, " "));
  }
}

function onlyKeys(value, allowed, where) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    fail(where, "must be a mapping");
    return false;
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) fail(where, `unknown field '${key}' (allowed: ${allowed.join(", ")})`);
  }
  return true;
}

const duration = /^\d+(ms|s|m|h)$/;
const pubsubRedisMetadata = ["redisHost", "redisPassword", "redisUsername", "enableTLS", "consumerID", "processingTimeout",
  "redeliverInterval", "queueDepth", "concurrency", "maxLenApprox", "maxRetries", "maxRetryBackoff", "redisDB",
  "redisType", "failover", "sentinelMasterName", "streamTTL"];

function validateDapr(obj, where) {
  onlyKeys(obj, ["apiVersion", "kind", "metadata", "spec", "scopes", "auth"], where);
  if (!obj.metadata?.name) fail(where, "metadata.name is required");
  if (obj.scopes !== undefined && !(Array.isArray(obj.scopes) && obj.scopes.every((s) => typeof s === "string"))) fail(where, "scopes must be a list of app ids");
  const spec = obj.spec ?? {};
  switch (obj.kind) {
    case "Component": {
      onlyKeys(spec, ["type", "version", "metadata", "initTimeout", "ignoreErrors"], `${where}.spec`);
      if (!/^(pubsub|state|bindings|secretstores|configuration|lock|middleware\.http|workflow)\.[a-z0-9.]+$/.test(spec.type ?? "")) fail(where, `spec.type '${spec.type}' is not a Dapr component type`);
      if (spec.version !== "v1") fail(where, "spec.version must be v1");
      for (const [i, item] of (spec.metadata ?? []).entries()) {
        onlyKeys(item, ["name", "value", "secretKeyRef"], `${where}.spec.metadata[${i}]`);
        if (!item.name) fail(where, `spec.metadata[${i}].name is required`);
        if ((item.value === undefined) === (item.secretKeyRef === undefined)) fail(where, `spec.metadata[${i}] needs exactly one of value and secretKeyRef`);
        if (item.secretKeyRef) onlyKeys(item.secretKeyRef, ["name", "key"], `${where}.spec.metadata[${i}].secretKeyRef`);
        if (spec.type === "pubsub.redis" && !pubsubRedisMetadata.includes(item.name)) fail(where, `pubsub.redis has no metadata field '${item.name}'`);
      }
      if (spec.type === "pubsub.redis" && !(spec.metadata ?? []).some((m) => m.name === "redisHost")) fail(where, "pubsub.redis needs redisHost");
      if (obj.auth) onlyKeys(obj.auth, ["secretStore"], `${where}.auth`);
      break;
    }
    case "Configuration": {
      onlyKeys(spec, ["tracing", "metric", "metrics", "mtls", "features", "accessControl", "api", "logging", "secrets", "appHttpPipeline", "httpPipeline", "nameResolution", "components", "wasm"], `${where}.spec`);
      const tracing = spec.tracing;
      if (tracing) {
        onlyKeys(tracing, ["samplingRate", "stdout", "zipkin", "otel"], `${where}.spec.tracing`);
        if (!(Number(tracing.samplingRate) >= 0 && Number(tracing.samplingRate) <= 1)) fail(where, "tracing.samplingRate must be a number in [0, 1] given as a string");
        if (tracing.otel) {
          onlyKeys(tracing.otel, ["endpointAddress", "isSecure", "protocol", "headers", "timeout"], `${where}.spec.tracing.otel`);
          if (!["grpc", "http"].includes(tracing.otel.protocol)) fail(where, "tracing.otel.protocol must be grpc or http");
          if (!tracing.otel.endpointAddress) fail(where, "tracing.otel.endpointAddress is required");
        }
      }
      break;
    }
    case "Resiliency": {
      onlyKeys(spec, ["policies", "targets"], `${where}.spec`);
      const policies = spec.policies ?? {};
      onlyKeys(policies, ["timeouts", "retries", "circuitBreakers"], `${where}.spec.policies`);
      for (const [name, value] of Object.entries(policies.timeouts ?? {})) if (!duration.test(value)) fail(where, `timeout '${name}' is not a duration`);
      for (const [name, retry] of Object.entries(policies.retries ?? {})) {
        onlyKeys(retry, ["policy", "duration", "maxInterval", "maxRetries", "matching"], `${where}.retries.${name}`);
        if (!["constant", "exponential"].includes(retry.policy)) fail(where, `retry '${name}': policy must be constant or exponential`);
        if (!Number.isInteger(retry.maxRetries)) fail(where, `retry '${name}': maxRetries must be an integer`);
        for (const key of ["duration", "maxInterval"]) if (retry[key] !== undefined && !duration.test(retry[key])) fail(where, `retry '${name}': ${key} is not a duration`);
      }
      for (const [name, breaker] of Object.entries(policies.circuitBreakers ?? {})) {
        onlyKeys(breaker, ["maxRequests", "interval", "timeout", "trip"], `${where}.circuitBreakers.${name}`);
        if (!breaker.trip) fail(where, `circuit breaker '${name}' needs a trip expression`);
      }
      const check = (kind, ref, at) => { if (ref !== undefined && !(ref in (policies[kind] ?? {}))) fail(where, `${at} names ${kind} policy '${ref}', which is not defined`); };
      const policyRefs = (target, at) => {
        onlyKeys(target, ["timeout", "retry", "circuitBreaker", "circuitBreakerScope", "circuitBreakerCacheSize"], at);
        check("timeouts", target.timeout, at);
        check("retries", target.retry, at);
        check("circuitBreakers", target.circuitBreaker, at);
      };
      const targets = spec.targets ?? {};
      onlyKeys(targets, ["apps", "actors", "components"], `${where}.spec.targets`);
      for (const [app, target] of Object.entries(targets.apps ?? {})) policyRefs(target, `${where}.targets.apps.${app}`);
      for (const [component, target] of Object.entries(targets.components ?? {})) {
        onlyKeys(target, ["outbound", "inbound"], `${where}.targets.components.${component}`);
        for (const direction of ["outbound", "inbound"]) if (target[direction]) policyRefs(target[direction], `${where}.targets.components.${component}.${direction}`);
      }
      break;
    }
    case "Subscription": {
      onlyKeys(spec, ["pubsubname", "topic", "routes", "route", "deadLetterTopic", "metadata", "bulkSubscribe"], `${where}.spec`);
      if (!spec.pubsubname || !spec.topic) fail(where, "spec.pubsubname and spec.topic are required");
      break;
    }
    default:
      fail(where, `unknown Dapr kind ${obj.kind}`);
  }
}

const documents = parseAllDocuments(readFileSync(0, "utf8"));
let count = 0;
for (const document of documents) {
  if (document.errors.length > 0) {
    fail("yaml", document.errors.map((e) => e.message).join("; "));
    continue;
  }
  const obj = document.toJS();
  if (!obj) continue;
  count++;
  const where = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
  if (!obj.apiVersion || !obj.kind) fail(where, "apiVersion and kind are required");
  else if (obj.apiVersion.startsWith("dapr.io/")) validateDapr(obj, where);
  else await validateKubernetes(obj, where);
}

for (const error of errors) console.log(`INVALID ${error}`);
console.log(`${count} objects, ${errors.length} errors`);
process.exit(errors.length > 0 || count === 0 ? 1 : 0);
