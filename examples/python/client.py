#!/usr/bin/python3
"""RebalanceMesh from Python: no generated code, the contracts loaded from the bundle's descriptor set.

    rmesh protos --out proto-bundle
    /usr/bin/python3 examples/python/client.py --bundle proto-bundle/rebalancemesh.binpb \
        --planning 127.0.0.1:5301 --pricing 127.0.0.1:5101 --risk 127.0.0.1:5201 --token "$VIEWER_TOKEN" --portfolio demo-eu

Needs grpcio and protobuf (Debian: python3-grpcio, python3-protobuf). Prints one JSON object: the portfolio's net value
(planning), a refused call's field violations decoded from google.rpc.BadRequest, DAX's consolidated mid (pricing) and
the portfolio's VaR (risk) — each call with a bearer token and a deadline.
"""
import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def load_messages(bundle):
    with open(bundle, "rb") as data:
        files = descriptor_pb2.FileDescriptorSet.FromString(data.read()).file
    if not hasattr(message_factory, "GetMessageClassesForFiles"):
        return message_factory.GetMessages(files)  # protobuf 3.x (Debian 12's python3-protobuf)
    pool = descriptor_pool.DescriptorPool()
    for file in files:  # dependencies come first in the set
        pool.Add(file)
    return message_factory.GetMessageClassesForFiles([f.name for f in files], pool)


class Client:
    """Unary calls by full method name, with the token and a deadline on each."""

    def __init__(self, address, messages, token, timeout=10.0):
        self.channel = grpc.insecure_channel(address)
        self.messages = messages
        self.metadata = [("authorization", "Bearer " + token)]
        self.timeout = timeout

    def call(self, service, method, request_type, response_type, **fields):
        request = self.messages[request_type](**fields)
        stub = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.messages[response_type].FromString,
        )
        return stub(request, metadata=self.metadata, timeout=self.timeout)


def bad_request_fields(error, messages):
    """The field violations of an INVALID_ARGUMENT: google.rpc.Status in the grpc-status-details-bin trailer."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = messages["google.rpc.Status"].FromString(value)
            for detail in status.details:
                if detail.type_url.endswith("/google.rpc.BadRequest"):
                    bad = messages["google.rpc.BadRequest"].FromString(detail.value)
                    return [{"field": v.field, "description": v.description} for v in bad.field_violations]
    return []


def main():
    parser = argparse.ArgumentParser()
    for name in ("bundle", "planning", "pricing", "risk", "token", "portfolio"):
        parser.add_argument("--" + name, required=True)
    args = parser.parse_args()
    messages = load_messages(args.bundle)
    planning = Client(args.planning, messages, args.token)
    pricing = Client(args.pricing, messages, args.token)
    risk = Client(args.risk, messages, args.token)
    result = {}

    got = planning.call("rebalance.planning.v1.PlanningService", "GetPortfolio",
                        "rebalance.planning.v1.GetPortfolioRequest", "rebalance.planning.v1.GetPortfolioResponse",
                        portfolio_id=args.portfolio)
    result["portfolio"] = {"id": got.portfolio.portfolio_id, "version": got.portfolio.version, "net_value": got.valuation.net_value.value}

    try:
        planning.call("rebalance.planning.v1.PlanningService", "PreviewRebalance",
                      "rebalance.planning.v1.PreviewRebalanceRequest", "rebalance.planning.v1.PreviewRebalanceResponse",
                      portfolio_id="")
        result["refused"] = None
    except grpc.RpcError as error:
        result["refused"] = {"code": error.code().name, "violations": bad_request_fields(error, messages)}

    quotes = pricing.call("rebalance.pricing.v1.PricingService", "GetQuotes",
                          "rebalance.pricing.v1.GetQuotesRequest", "rebalance.pricing.v1.GetQuotesResponse",
                          instrument_ids=["DAX"])
    result["quote"] = {p.instrument_id: p.mid.value for p in quotes.prices}

    assessed = risk.call("rebalance.risk.v1.RiskService", "AssessPortfolio",
                         "rebalance.risk.v1.AssessPortfolioRequest", "rebalance.risk.v1.AssessPortfolioResponse",
                         portfolio_id=args.portfolio)
    result["risk"] = {"net_value": assessed.net_value, "estimates": len(assessed.estimates)}

    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
