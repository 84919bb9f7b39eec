// RebalanceMesh from Node: @grpc/grpc-js with the contracts loaded from the bundle's descriptor set (no generated code).
//
//   rmesh protos --out proto-bundle
//   node examples/node/client.js --bundle proto-bundle/rebalancemesh.binpb --planning 127.0.0.1:5301 \
//       --pricing 127.0.0.1:5101 --risk 127.0.0.1:5201 --token "$VIEWER_TOKEN" --portfolio demo-eu
//
// Needs @grpc/grpc-js and @grpc/proto-loader (npm; scripts/ensure-tools.sh installs them into .tools/npm, run with
// NODE_PATH=.tools/npm/node_modules). Prints the same JSON object as the Python example.
'use strict';
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
require('protobufjs/ext/descriptor');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const name of ['bundle', 'planning', 'pricing', 'risk', 'token', 'portfolio']) {
  if (!args[name]) { console.error(`--${name} is required`); process.exit(2); }
}

const bundle = fs.readFileSync(args.bundle);
const options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const api = grpc.loadPackageDefinition(protoLoader.loadFileDescriptorSetFromBuffer(bundle, options));
const types = protobuf.Root.fromDescriptor(bundle); // to decode google.rpc error details

const credentials = grpc.credentials.createInsecure();
const clients = {
  planning: new api.rebalance.planning.v1.PlanningService(args.planning, credentials),
  pricing: new api.rebalance.pricing.v1.PricingService(args.pricing, credentials),
  risk: new api.rebalance.risk.v1.RiskService(args.risk, credentials),
};

// Every call carries the token and a 10 s deadline.
function call(client, method, request) {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${args.token}`);
  return new Promise((resolve, reject) =>
    client[method](request, metadata, { deadline: new Date(Date.now() + 10_000) }, (error, response) => (error ? reject(error) : resolve(response))));
}

// The field violations of an INVALID_ARGUMENT: google.rpc.Status in the grpc-status-details-bin trailer.
function badRequestFields(error) {
  const [details] = error.metadata.get('grpc-status-details-bin');
  if (!details) return [];
  const status = types.lookupType('google.rpc.Status').decode(details);
  return status.details
    .filter((any) => any.type_url.endsWith('/google.rpc.BadRequest'))
    .flatMap((any) => types.lookupType('google.rpc.BadRequest').decode(any.value).field_violations)
    .map((v) => ({ field: v.field, description: v.description }));
}

(async () => {
  const result = {};
  const got = await call(clients.planning, 'GetPortfolio', { portfolio_id: args.portfolio });
  result.portfolio = { id: got.portfolio.portfolio_id, version: Number(got.portfolio.version), net_value: got.valuation.net_value.value };

  try {
    await call(clients.planning, 'PreviewRebalance', { portfolio_id: '' });
    result.refused = null;
  } catch (error) {
    result.refused = { code: Object.keys(grpc.status).find((k) => grpc.status[k] === error.code), violations: badRequestFields(error) };
  }

  const quotes = await call(clients.pricing, 'GetQuotes', { instrument_ids: ['DAX'] });
  result.quote = Object.fromEntries(quotes.prices.map((p) => [p.instrument_id, p.mid.value]));

  const assessed = await call(clients.risk, 'AssessPortfolio', { portfolio_id: args.portfolio });
  result.risk = { net_value: assessed.net_value, estimates: assessed.estimates.length };

  console.log(JSON.stringify(result));
  for (const client of Object.values(clients)) client.close();
})().catch((error) => { console.error(error.message); process.exit(1); });
