#!/usr/bin/env bash
# Regenerates the Python modules from the two .proto files (needs grpcio-tools, a dev
# dependency). A test fails when the committed modules are out of date.
#
# Usage: generate.sh [OUTPUT_ROOT]   (default: the repository root, i.e. in place)
#
# protobuf ships no type information, so the generated stubs subclass `Any`, and the
# gRPC module is unannotated; they get a `# mypy: ignore-errors` line so that
# `mypy --strict` checks the code that uses them, not them.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.}"
python="${PYTHON:-python}"
"$python" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" \
  controller/tfserving/tensor.proto
"$python" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  controller/tfserving/serving.proto
for stub in "$out"/controller/tfserving/tensor_pb2.pyi "$out"/controller/tfserving/serving_pb2.pyi \
  "$out"/controller/tfserving/serving_pb2_grpc.py; do
  { echo "# mypy: ignore-errors"; cat "$stub"; } > "$stub.tmp" && mv "$stub.tmp" "$stub"
done
