"""ecs-infer: a reconciliation controller for BERT-class models served on ECS.

Importing the package sets one process-wide default before any of its modules imports
gRPC: `GRPC_EXPERIMENTS`, unless the environment already sets it (then it is left as
it is). gRPC core reads that variable once, when it starts, so it cannot be set later.
"""

import os

#: gRPC core experiments ecs-infer turns off. `-event_engine_client` makes client
#: connections use gRPC's classic TCP client instead of its EventEngine client (the
#: default since gRPC 1.6x). Measured with `bench/daemon.py` (200 endpoints probed at
#: 1 Hz on a 2-core machine), with grpcio 1.85: the prober's CPU falls by about 15 %
#: (about 6.5 % of one core alone before, 4.8 to 5.8 % after; 10.7 % in the daemon beside
#: the sandbox before, 8.7 to 9.9 % after) and the daemon's peak RSS from 138 to 131 MB.
#: `tests/test_grpc_defaults.py` fails if a grpcio upgrade no longer knows the experiment.
GRPC_EXPERIMENTS = "-event_engine_client"

os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)
