"""Generated gRPC stubs for proto/augur/v1 (clients/python/generate.sh; do not edit the *_pb2* files).

prediction_pb2(_grpc): the public Prediction service; admin_pb2(_grpc): ModelAdmin (the admin port);
samples_pb2: the sample-log records (`augur samples dump` prints them as JSON).
"""
