#!/bin/sh
# Regenerate the Python modules from the vendored Broadband Forum schemas (TR-369 USP 1.4.1,
# github.com/BroadbandForum/usp, specification/usp-{record,msg}-1-4.proto, LICENSE.txt beside).
# Needs grpcio-tools (pip install grpcio-tools); its protoc version decides the protobuf runtime
# the `usp` extra asks for in pyproject.toml. Run from anywhere:
set -eu
cd "$(dirname "$0")"
python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. usp-record-1-4.proto usp-msg-1-4.proto
