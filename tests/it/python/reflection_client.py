"""A client that knows nothing of augur's proto: it learns the services and message types through
gRPC server reflection (grpcio-reflection speaks v1alpha, like older grpcurl and most GUI clients),
builds a PredictRequest from the discovered descriptors and calls Predict.

Usage: reflection_client.py HOST:PORT  → prints one JSON object: services, scores, model.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[1])
    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindServiceByName("augur.v1.Prediction").FindMethodByName("Predict")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.ParseDict(
        {
            "scene": "ranking",
            "userId": "u42",
            "context": {"hour": {"intValue": "20"}, "device": {"stringValue": "ios"}},
            "candidates": [{"itemId": "i1"}, {"itemId": "i2"}, {"itemId": "i3"}],
        },
        request_class(),
    )
    predict = channel.unary_unary(
        "/augur.v1.Prediction/Predict",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    response = predict(request, timeout=30)
    print(
        json.dumps(
            {"services": services, "scores": list(response.scores), "model": response.model_name}
        )
    )


if __name__ == "__main__":
    main()
