# augur for docker-compose.yml and users' own deployments (not built in CI: no Docker engine runs
# on the build machines). Debian bookworm in both stages, like the machines augur is developed on.

# --- build: the release binary -------------------------------------------------------------
FROM rust:1.92-bookworm AS build
# protoc: the tonic and etcd-client build scripts generate code from .proto files.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin augur

# --- run: the binary, the onnxruntime library, the demo catalogue and models ---------------
FROM debian:bookworm-slim
# ort loads libonnxruntime.so at run time (`load-dynamic`); it comes from the PyPI wheel, installed
# as scripts/setup.sh does: a venv named .venv beside the binary, where augur looks for it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/augur
COPY tools/train/requirements.txt /tmp/requirements.txt
RUN python3 -m venv .venv \
 && .venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      "$(grep '^onnxruntime==' /tmp/requirements.txt)" \
 && rm /tmp/requirements.txt
# The embedded defaults read these relative to the working directory.
COPY config config
COPY features features
COPY models models
COPY demo demo
COPY --from=build /src/target/release/augur /opt/augur/bin/augur
ENV PATH=/opt/augur/bin:$PATH
RUN useradd --system --home /opt/augur augur
USER augur
EXPOSE 50051 9090
CMD ["augur", "serve"]
