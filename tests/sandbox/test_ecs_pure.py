"""Table tests of the pure decisions of the emulated data plane (`controller.sandbox.ecs`):
placement expressions, which instance fits a task and why not, host-port bindings, task
resources, the gRPC container of a task definition, rolling-update bounds, instance
addresses, user data and fault tags."""

from __future__ import annotations

import random

import pytest

from controller.sandbox.ecs.agents import (
    address_prefix_for,
    cluster_of_user_data,
    nth_address,
)
from controller.sandbox.ecs.backends import (
    ContainerDefinition,
    DeploymentConfiguration,
    PortMapping,
)
from controller.sandbox.ecs.endpoints import GrpcContainer, grpc_container
from controller.sandbox.ecs.expressions import ExpressionError, expression_matches
from controller.sandbox.ecs.faults import TaskFaults, faults_of, parse_duration
from controller.sandbox.ecs.placement import (
    EPHEMERAL_PORTS,
    Binding,
    Candidate,
    Needs,
    Usage,
    choose_bindings,
    misfit,
    spread_rank,
    task_resources,
)
from controller.sandbox.ecs.scheduler import rollout_bounds

# --- the cluster query language -------------------------------------------------------

_INSTANCE = {
    "attribute:ecs.instance-type": "inf1.xlarge",
    "attribute:ecs.os-type": "linux",
    "attribute:ecs.capability.docker-remote-api.1.44": "",  # present without a value
    "ec2InstanceId": "i-1",
}


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ("attribute:ecs.instance-type == inf1.xlarge", True),
        ("attribute:ecs.instance-type == inf2.xlarge", False),
        ("attribute:ecs.instance-type != inf1.xlarge", False),
        ("attribute:ecs.instance-type != inf2.xlarge", True),
        ("attribute:ecs.instance-type == 'inf1.xlarge'", True),
        ('attribute:ecs.instance-type == "inf1.xlarge"', True),
        ("attribute:ecs.instance-type =~ inf1.*", True),
        ("attribute:ecs.instance-type =~ inf2.*", False),
        ("attribute:ecs.instance-type =~ inf1", False),  # the whole value must match
        ("attribute:ecs.instance-type =~ *.xlarge", True),
        ("attribute:ecs.instance-type in [inf2.xlarge, inf1.xlarge]", True),
        ("attribute:ecs.instance-type in [inf2.xlarge]", False),
        ("attribute:ecs.instance-type not_in [inf2.xlarge]", True),
        ("attribute:ecs.instance-type not_in [inf1.xlarge, inf2.xlarge]", False),
        ("attribute:ecs.os-type exists", True),
        ("attribute:ecs.capability.docker-remote-api.1.44 exists", True),
        ("attribute:no-such exists", False),
        ("attribute:no-such == x", False),
        ("attribute:no-such != x", True),  # a missing attribute differs from everything
        ("attribute:no-such in [x]", False),
        ("attribute:no-such not_in [x]", True),
        ("attribute:ecs.os-type exists or ec2InstanceId == i-2", True),
        ("attribute:no-such exists or ec2InstanceId == i-1", True),
        ("attribute:no-such exists || ec2InstanceId == i-1", True),
        ("attribute:ecs.instance-type == inf1.xlarge and ec2InstanceId == i-2", False),
        ("attribute:ecs.instance-type == inf1.xlarge && ec2InstanceId == i-1", True),
        # `and` binds tighter than `or`
        ("ec2InstanceId == i-2 and attribute:ecs.os-type exists or ec2InstanceId == i-1", True),
        ("ec2InstanceId == i-1 or ec2InstanceId == i-2 and attribute:no-such exists", True),
        ("ec2InstanceId == i-2 or ec2InstanceId == i-1 and attribute:no-such exists", False),
    ],
)
def test_placement_expressions(expression: str, matches: bool) -> None:
    assert expression_matches(expression, _INSTANCE.get) is matches


@pytest.mark.parametrize("expression", ["what is this", "attribute:x", "", "a ~= b"])
def test_an_unreadable_placement_expression_is_an_error(expression: str) -> None:
    with pytest.raises(ExpressionError, match="cannot read placement expression"):
        expression_matches(expression, _INSTANCE.get)


# --- which instance fits -------------------------------------------------------------

_GROUP = "service:bert"


def _candidate(
    *,
    cores: str | None = "4",
    cpu: int = 4096,
    memory: int = 7680,
    instance_type: str = "inf1.xlarge",
    used: Usage | None = None,
) -> Candidate:
    attributes: dict[str, str | None] = {"ecs.instance-type": instance_type}
    if cores is not None:
        attributes["ecs-infer.neuron-cores"] = cores
    return Candidate(
        id="ci-1",
        attributes=attributes,
        cpu=cpu,
        memory=memory,
        subject=lambda name: attributes.get(name.removeprefix("attribute:")),
        used=used or Usage(),
    )


def _needs(*constraints: dict[str, str], cores: int = 1, cpu: int = 0, memory: int = 0) -> Needs:
    return Needs(group=_GROUP, cores=cores, cpu=cpu, memory=memory, constraints=constraints)


_INF2_ONLY = {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ inf2.*"}
_DISTINCT = {"type": "distinctInstance"}
_PREFIX = "The closest matching (container-instance ci-1)"


@pytest.mark.parametrize(
    ("needs", "candidate", "expected"),
    [
        (_needs(), _candidate(), None),
        (_needs(cores=4), _candidate(used=Usage(groups={"service:other": 1})), None),
        (
            _needs(_INF2_ONLY),
            _candidate(),
            (0, f"{_PREFIX} did not match the placement constraints."),
        ),
        (_needs(_INF2_ONLY), _candidate(instance_type="inf2.xlarge"), None),
        (
            _needs(_DISTINCT),
            _candidate(used=Usage(cores=1, groups={_GROUP: 1})),
            (1, f"{_PREFIX} is already running a task of this service (distinctInstance)."),
        ),
        (_needs(_DISTINCT), _candidate(used=Usage(groups={"service:other": 3})), None),
        (
            _needs(cores=2),
            _candidate(used=Usage(cores=3)),
            (2, f"{_PREFIX} has insufficient NeuronCores available (1 free, 2 needed)."),
        ),
        (
            _needs(),
            _candidate(cores=None),  # an instance without NeuronCores
            (2, f"{_PREFIX} has insufficient NeuronCores available (0 free, 1 needed)."),
        ),
        (_needs(cores=0), _candidate(cores=None), None),  # a task that needs none
        (
            _needs(cpu=1024),
            _candidate(cpu=4096, used=Usage(cpu=3584)),
            (3, f"{_PREFIX} has insufficient CPU units available."),
        ),
        (
            _needs(memory=4096),
            _candidate(memory=7680, used=Usage(memory=4096)),
            (3, f"{_PREFIX} has insufficient memory available."),
        ),
        (_needs(cpu=512, memory=3584), _candidate(used=Usage(cpu=3584, memory=4096)), None),
        (  # the first requirement missed is the reason
            _needs(_INF2_ONLY, cores=8, cpu=10**6),
            _candidate(),
            (0, f"{_PREFIX} did not match the placement constraints."),
        ),
    ],
)
def test_what_keeps_a_task_off_an_instance(
    needs: Needs, candidate: Candidate, expected: tuple[int, str] | None
) -> None:
    assert misfit(needs, candidate) == expected


def test_an_unreadable_constraint_is_an_error_not_a_misfit() -> None:
    with pytest.raises(ExpressionError):
        misfit(_needs({"type": "memberOf", "expression": "what is this"}), _candidate())


def test_a_service_spreads_over_instances() -> None:
    needs = _needs()
    empty = _candidate()
    one_of_ours = _candidate(used=Usage(groups={_GROUP: 1}))
    two_others = _candidate(used=Usage(groups={"service:a": 1, "service:b": 1}))
    ranked = sorted([one_of_ours, two_others, empty], key=lambda c: spread_rank(needs, c))
    assert ranked == [empty, two_others, one_of_ours]


# --- host ports -----------------------------------------------------------------------


def _container(name: str, *mappings: PortMapping) -> ContainerDefinition:
    return {"name": name, "portMappings": list(mappings)}


_FIXED = [
    _container(
        "bert",
        {"containerPort": 8500, "hostPort": 8500},
        {"containerPort": 8501, "hostPort": 8501, "protocol": "tcp"},
    ),
    _container("neuron-rtd"),
]


@pytest.mark.parametrize(
    ("definitions", "network_mode", "used", "expected"),
    [
        (
            _FIXED,
            "bridge",
            set(),
            [Binding("bert", 8500, 8500, "tcp"), Binding("bert", 8501, 8501, "tcp")],
        ),
        (_FIXED, "bridge", {22, 8501}, None),  # a fixed host port is taken
        (
            [_container("a", {"containerPort": 80, "hostPort": 8080}), _container("b")],
            None,
            {80},  # the container port does not matter, the host port does
            [Binding("a", 80, 8080, "tcp")],
        ),
        (
            [
                _container("a", {"containerPort": 80, "hostPort": 9000}),
                _container("b", {"containerPort": 81, "hostPort": 9000}),
            ],
            "bridge",
            set(),
            None,  # two containers of one task on one host port
        ),
        (
            [_container("dns", {"containerPort": 53, "hostPort": 53, "protocol": "udp"})],
            "bridge",
            set(),
            [Binding("dns", 53, 53, "udp")],
        ),
        (
            [_container("bert", {"containerPort": 8500}, {"containerPort": 8501, "hostPort": 1})],
            "host",
            set(),
            [Binding("bert", 8500, 8500, "tcp"), Binding("bert", 8501, 8501, "tcp")],
        ),
        (
            [_container("bert", {"containerPort": 8500})],
            "awsvpc",
            {8500},
            None,  # awsvpc binds the container port on the instance (no ENIs)
        ),
        (
            [{"name": "cfn", "PortMappings": [{"containerPort": 8500, "hostPort": 8500}]}],
            "bridge",
            set(),
            [Binding("cfn", 8500, 8500, "tcp")],  # CloudFormation's spelling
        ),
        ([_container("none")], "bridge", {8500}, []),
    ],
)
def test_fixed_host_ports(
    definitions: list[ContainerDefinition],
    network_mode: str | None,
    used: set[int],
    expected: list[Binding] | None,
) -> None:
    found = choose_bindings(definitions, network_mode=network_mode, used=used, rng=random.Random(0))
    assert found == expected


def test_dynamic_host_ports_are_ephemeral_distinct_and_free() -> None:
    definitions = [
        _container("bert", {"containerPort": 8500, "hostPort": 0}, {"containerPort": 8501}),
        _container("sidecar", {"containerPort": 8500, "hostPort": 50000}),
    ]
    draws = random.Random(7)
    first, second, third = (draws.choice(EPHEMERAL_PORTS) for _ in range(3))
    assert len({first, second, third, 50000}) == 4  # the seed's draws, for the table below
    used = {first}  # the first draw is in use: it is drawn again
    found = choose_bindings(definitions, network_mode="bridge", used=used, rng=random.Random(7))
    assert found == [
        Binding("sidecar", 8500, 50000, "tcp"),  # fixed ones first
        Binding("bert", 8500, second, "tcp"),
        Binding("bert", 8501, third, "tcp"),
    ]


def test_no_free_ephemeral_port_places_nothing() -> None:
    definitions = [_container("bert", {"containerPort": 8500})]
    used = set(EPHEMERAL_PORTS)
    assert choose_bindings(definitions, network_mode=None, used=used, rng=random.Random()) is None


# --- task resources -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definitions", "expected"),
    [
        ([], (0, 0)),
        ([{"name": "a", "cpu": 256, "memory": 512}], (256, 512)),
        ([{"name": "a", "memoryReservation": 1024}], (0, 1024)),
        ([{"name": "a", "memory": 2048, "memoryReservation": 1024}], (0, 2048)),  # the limit
        (
            [{"name": "bert", "cpu": 1024, "memory": 4096}, {"name": "rtd", "cpu": 128}],
            (1152, 4096),
        ),
    ],
)
def test_task_resources(definitions: list[ContainerDefinition], expected: tuple[int, int]) -> None:
    assert task_resources(definitions) == expected


# --- what a task serves ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("definitions", "expected"),
    [
        (
            [
                {"name": "neuron-rtd"},
                {
                    "name": "bert",
                    "command": ["--port=8500", "--rest_api_port=8501", "--model_name=bert"],
                    "portMappings": [{"containerPort": 8501}, {"containerPort": 8500}],
                },
            ],
            GrpcContainer("bert", 8500, "bert"),
        ),
        (
            [
                {
                    "name": "tfs",
                    "entryPoint": ["tensorflow_model_server", "--port=9000"],
                    "command": ["--model_name=minilm"],
                    "portMappings": [{"containerPort": 9001}, {"containerPort": 9000}],
                }
            ],
            GrpcContainer("tfs", 9000, "minilm"),
        ),
        (
            [
                {
                    "name": "tfs",
                    "command": ["--port=7000"],  # not mapped: the flag does not decide
                    "portMappings": [{"containerPort": 9001}, {"containerPort": 8500}],
                }
            ],
            GrpcContainer("tfs", 8500, "bert"),
        ),
        (
            [
                {
                    "name": "tfs",
                    "portMappings": [
                        {"containerPort": 8500},
                        {"containerPort": 9000, "appProtocol": "grpc"},
                    ],
                }
            ],
            GrpcContainer("tfs", 9000, "bert"),
        ),
        (
            [
                {
                    "name": "tfs",
                    "environment": [{"name": "MODEL_NAME", "value": "from-env"}],
                    "portMappings": [
                        {"containerPort": 9001, "name": "rest"},
                        {"containerPort": 9000, "name": "tfs-grpc"},
                    ],
                }
            ],
            GrpcContainer("tfs", 9000, "from-env"),
        ),
        (
            [
                {
                    "name": "tfs",
                    "portMappings": [
                        {"containerPort": 53, "protocol": "udp"},
                        {"containerPort": 9100},
                    ],
                }
            ],
            GrpcContainer("tfs", 9100, "bert"),  # the first TCP mapping
        ),
        ([{"name": "dns", "portMappings": [{"containerPort": 53, "protocol": "udp"}]}], None),
        ([{"name": "worker"}], None),
    ],
)
def test_the_grpc_container_of_a_task_definition(
    definitions: list[ContainerDefinition], expected: GrpcContainer | None
) -> None:
    assert grpc_container(definitions) == expected


# --- rolling updates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "configuration", "expected"),
    [
        (2, {}, (4, 2)),  # ECS's defaults: 200 % and 100 %
        (0, {}, (0, 0)),
        (3, {"maximumPercent": 150, "minimumHealthyPercent": 50}, (4, 2)),  # floor, ceil
        (1, {"maximumPercent": 100, "minimumHealthyPercent": 0}, (1, 0)),
        (5, {"minimumHealthyPercent": 100}, (10, 5)),
    ],
)
def test_rollout_bounds(
    desired: int, configuration: DeploymentConfiguration, expected: tuple[int, int]
) -> None:
    assert rollout_bounds(desired, configuration) == expected


# --- instances ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "prefix"), [(5000, "127.19.136"), (80, "127.255.80"), (65535, "127.255.255")]
)
def test_the_address_prefix_of_a_sandbox_is_never_127_0_0(port: int, prefix: str) -> None:
    assert address_prefix_for(port) == prefix


@pytest.mark.parametrize(
    ("prefix", "index", "address"),
    [
        ("127.19.136", 0, "127.19.136.1"),
        ("127.19.136", 253, "127.19.136.254"),
        ("127.19.136", 254, "127.19.137.1"),  # the next /24
        ("127.19.255", 254, "127.20.0.1"),
        ("127.255.255", 254, "127.1.0.1"),  # wraps past 127.0.x.x
    ],
)
def test_instance_addresses(prefix: str, index: int, address: str) -> None:
    assert nth_address(prefix, index) == address


@pytest.mark.parametrize(
    ("user_data", "cluster"),
    [
        ("#!/bin/bash\necho ECS_CLUSTER=ecs-inf1-demo >> /etc/ecs/ecs.config\n", "ecs-inf1-demo"),
        ("ECS_CLUSTER = 'quoted_name'", "quoted_name"),
        ('ECS_CLUSTER="double-quoted"\nECS_ENABLE_TASK_IAM_ROLE=true', "double-quoted"),
        ("#!/bin/bash\necho hello\n", None),
        ("", None),
    ],
)
def test_the_cluster_an_agent_joins(user_data: str, cluster: str | None) -> None:
    assert cluster_of_user_data(user_data) == cluster


# --- fault tags -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("1.5s", 1.5), ("2", 2.0), ("1m", 60.0), (" 3 s ", 3.0), ("0", 0.0)],
)
def test_fault_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "fast", "-1s", "1h", "1.s"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("tags", "faults"),
    [
        ({}, TaskFaults()),
        ({"sandbox:delay": "250ms"}, TaskFaults(delay_s=0.25)),
        ({"sandbox:delay": "slow"}, TaskFaults()),  # not a duration: no delay
        ({"sandbox:fail": "true"}, TaskFaults(fail=True)),
        ({"sandbox:fail": " Yes "}, TaskFaults(fail=True)),
        ({"sandbox:fail": "1"}, TaskFaults(fail=True)),
        ({"sandbox:fail": "false"}, TaskFaults()),
        ({"sandbox:fail": "on", "sandbox:delay": "2"}, TaskFaults(delay_s=2.0, fail=True)),
        ({"sandbox:crash": "true"}, TaskFaults()),  # a crash is not a model server's fault
    ],
)
def test_the_faults_a_task_asks_for(tags: dict[str, str], faults: TaskFaults) -> None:
    assert faults_of(tags) == faults
