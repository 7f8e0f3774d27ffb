#!/usr/bin/env bash
# Regenerates the Python modules from the two .proto files (needs grpcio-tools, a dev
# dependency). A test fails when the committed modules are out of date.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \
  controller/tfserving/tensor.proto
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
  controller/tfserving/serving.proto
