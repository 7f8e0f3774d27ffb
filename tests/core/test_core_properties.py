"""Properties of the planner over generated specs and generated drift (Hypothesis).

1. Planning from an AWS that equals the spec gives an empty plan.
2. Applying a plan to a model of AWS and planning again gives an empty plan, from any
   earlier state, with any drift and any resources we do not own in the way.
3. No plan gives an instance more NeuronCores than it has: every cluster's fleet holds
   a placement of all its replicas (or the desired state says it cannot).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from core_builders import (
    FACTS,
    apply_to_model,
    cluster,
    converge,
    deployment,
    empty_observed,
    plan_against,
    specs,
    view,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.catalog import NEURON_CORES_PER_INSTANCE, shape_of
from controller.core.desired import desired_state
from controller.core.neuron import Replica, pack
from controller.core.normalising import same_content
from controller.core.planning import families_to_read, plan
from controller.core.plans import Action, Plan
from controller.core.states import (
    MANAGED_BY,
    SPEC_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredState,
    ObservedState,
    is_managed,
)
from controller.core.taskdefs import host_ports
from controller.specs.loading import SpecSet
from controller.specs.models import InferenceCluster

CLUSTER_NAMES = ("alpha", "beta", "gamma")
INSTANCE_TYPES = sorted(NEURON_CORES_PER_INSTANCE)

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def cluster_specs(draw: st.DrawFn, name: str) -> InferenceCluster:
    minimum = draw(st.integers(0, 3))
    return cluster(
        name,
        capacity={
            "instanceType": draw(st.sampled_from(INSTANCE_TYPES)),
            "market": draw(st.sampled_from(["spot", "on-demand"])),
            "onDemandFallback": draw(st.booleans()),
            "minInstances": minimum,
            "maxInstances": minimum + draw(st.integers(0, 8)),
        },
        ami=draw(st.sampled_from(["auto", "ami-0aaaaaaaaaaaaaaaa"])),
        securityGroupIds=draw(st.sampled_from([[], ["sg-0abc"]])),
        allowedCidrs=draw(st.sampled_from([[], ["10.0.0.0/8"], ["10.0.0.0/8", "192.168.0.0/16"]])),
        subnetIds=draw(st.sampled_from([[], ["subnet-0c"], ["subnet-0a", "subnet-0b"]])),
        deletionPolicy=draw(st.sampled_from(["delete", "delete", "retain"])),
    )


@st.composite
def spec_sets(draw: st.DrawFn) -> SpecSet:
    names = draw(st.lists(st.sampled_from(CLUSTER_NAMES), min_size=1, max_size=3, unique=True))
    clusters = [draw(cluster_specs(name)) for name in names]
    deployments = []
    for number in range(draw(st.integers(0, 6))):
        home = draw(st.sampled_from(clusters))
        cores = NEURON_CORES_PER_INSTANCE[home.spec.capacity.instanceType]
        port = draw(st.sampled_from([8500, 9000]))
        deployments.append(
            deployment(
                f"model-{number}",
                cluster=home.metadata.name,
                model={
                    "name": f"model{number}",
                    "image": draw(st.sampled_from(["example.com/bert:1", "example.com/bert:2"])),
                    "grpcPort": port,
                    "restPort": port + 1,
                },
                neuronCores=draw(st.integers(1, cores)),
                replicas=draw(st.integers(0, 5)),
                runtime=draw(st.sampled_from(["neuron", "neuron-rtd"])),
                memoryReservation=draw(st.sampled_from([1000, 2000])),
                serviceName=draw(st.sampled_from([None, f"svc-{number}"])),
                driftPolicy=draw(st.sampled_from(["enforce", "enforce", "detect"])),
                deletionPolicy=draw(st.sampled_from(["delete", "delete", "retain"])),
            )
        )
    return specs(*clusters, *deployments)


def desired_states() -> st.SearchStrategy[DesiredState]:
    return spec_sets().map(lambda s: desired_state(s, FACTS))


# --- drift: what people and AWS do to resources between two passes --------------------

Drift = Callable[[ObservedState, int], ObservedState]


def _pick(items: list[Any], seed: int) -> Any:
    return items[seed % len(items)]


def _service_drift(change: Callable[[Any], dict[str, Any]]) -> Drift:
    def drift(model: ObservedState, seed: int) -> ObservedState:
        if not model.services:
            return model
        key = _pick(sorted(model.services), seed)
        changed = dataclasses.replace(model.services[key], **change(model.services[key]))
        return dataclasses.replace(model, services={**model.services, key: changed})

    return drift


def _without_tag(tags: Any, name: str) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k != name}


def _drop_instance(model: ObservedState, seed: int) -> ObservedState:
    clusters = sorted(name for name, items in model.instances.items() if items)
    if not clusters:
        return model
    name = _pick(clusters, seed)
    items = model.instances[name]
    victim = _pick(list(items), seed // 7)
    kept = tuple(i for i in items if i is not victim)
    return dataclasses.replace(model, instances={**model.instances, name: kept})


def _change_instance(model: ObservedState, seed: int) -> ObservedState:
    clusters = sorted(name for name, items in model.instances.items() if items)
    if not clusters:
        return model
    name = _pick(clusters, seed)
    items = list(model.instances[name])
    index = seed % len(items)
    items[index] = dataclasses.replace(
        items[index], **_pick([{"image_id": "ami-0old"}, {"lifecycle": "on-demand"}], seed)
    )
    return dataclasses.replace(model, instances={**model.instances, name: tuple(items)})


def _delete_cluster(model: ObservedState, seed: int) -> ObservedState:
    if not model.clusters:
        return model
    name = _pick(sorted(model.clusters), seed)
    gone = dataclasses.replace(model.clusters[name], status="INACTIVE")
    return dataclasses.replace(model, clusters={**model.clusters, name: gone})


def _empty_security_group(model: ObservedState, seed: int) -> ObservedState:
    if not model.security_groups:
        return model
    name = _pick(sorted(model.security_groups), seed)
    emptied = dataclasses.replace(model.security_groups[name], ranges=frozenset())
    return dataclasses.replace(model, security_groups={**model.security_groups, name: emptied})


def _deregister_revision(model: ObservedState, seed: int) -> ObservedState:
    if not model.task_definitions:
        return model
    family = _pick(sorted(model.task_definitions), seed)
    *older, newest = model.task_definitions[family]
    deregistered = dataclasses.replace(newest, status="INACTIVE")
    return dataclasses.replace(
        model, task_definitions={**model.task_definitions, family: (*older, deregistered)}
    )


def _foreign_cluster(model: ObservedState, seed: int) -> ObservedState:
    from controller.core.states import LiveCluster

    name = _pick(list(CLUSTER_NAMES), seed)
    if name in model.clusters:
        return model
    foreign = LiveCluster(name=name, arn=f"arn:{name}", status="ACTIVE", tags={"team": "x"})
    return dataclasses.replace(model, clusters={**model.clusters, name: foreign})


DRIFTS: list[Drift] = [
    _service_drift(lambda s: {"desired_count": s.desired_count + 2}),
    _service_drift(lambda s: {"task_definition": s.task_definition + "0"}),
    _service_drift(lambda s: {"status": "INACTIVE"}),
    _service_drift(lambda s: {"tags": _without_tag(s.tags, SPEC_HASH_TAG)}),
    _service_drift(lambda s: {"tags": _without_tag(s.tags, TASK_DEFINITION_TAG)}),
    _service_drift(lambda s: {"tags": _without_tag(s.tags, MANAGED_BY)}),
    _drop_instance,
    _change_instance,
    _delete_cluster,
    _empty_security_group,
    _deregister_revision,
    _foreign_cluster,
]


@st.composite
def drifted(draw: st.DrawFn, model: ObservedState) -> ObservedState:
    for drift in draw(st.lists(st.sampled_from(DRIFTS), max_size=4)):
        model = drift(model, draw(st.integers(0, 1000)))
    return model


# --- the properties ---------------------------------------------------------------------


def _assert_settled(desired: DesiredState, model: ObservedState) -> Plan:
    families = families_to_read(desired, view(model, ()))
    result = plan(desired, view(model, families))
    assert result.actions == (), [a.sentence() for a in result.actions]
    return result


def _assert_converged(desired: DesiredState, model: ObservedState) -> None:
    """AWS holds what the spec says, wherever ecs-infer is allowed to act."""
    for name, wanted in desired.clusters.items():
        live = model.clusters[name]
        if not is_managed(live.tags):
            continue  # someone else's cluster: left alone, with a warning
        assert live.status == "ACTIVE"
        alive = [i for i in model.instances.get(name, ()) if i.alive and is_managed(i.tags)]
        assert len(alive) == wanted.fleet.count
        assert {(i.instance_type, i.image_id) for i in alive} <= {
            (wanted.fleet.instance_type, wanted.fleet.image_id)
        }
        group = model.security_groups.get(name)
        if wanted.security_group is None:
            assert group is None
        else:
            assert group is not None and group.ingress == set(wanted.security_group.ingress)
    for wanted_deployment in desired.deployments.values():
        service = model.services.get(
            (wanted_deployment.service.cluster, wanted_deployment.service.name)
        )
        live_cluster = model.clusters[wanted_deployment.cluster]
        if not is_managed(live_cluster.tags) or wanted_deployment.drift_policy == "detect":
            continue
        assert service is not None
        if not is_managed(service.tags):
            continue  # someone else's service: left alone, with a warning
        assert service.status == "ACTIVE"
        assert service.desired_count == wanted_deployment.replicas
        revisions = {r.arn: r for rs in model.task_definitions.values() for r in rs}
        running = revisions.get(service.task_definition)
        # A revision deregistered behind our back keeps running (ECS allows it) and is
        # not read again while the service's record is in sync: nothing to compare.
        if running is not None:
            assert same_content(running.content, wanted_deployment.task_definition.content)


@PROPERTY_SETTINGS
@given(desired=desired_states())
def test_an_aws_equal_to_the_spec_gives_an_empty_plan(desired: DesiredState) -> None:
    model = converge(desired, empty_observed())

    # ... and a pass over it reads no task-definition family at all.
    assert families_to_read(desired, view(model, ())) == set()
    result = _assert_settled(desired, model)
    assert result.detected_drift == ()
    _assert_converged(desired, model)


def _live_tags(model: ObservedState, action: Action) -> Mapping[str, str]:
    """The tags of the live resource an action changes, as the model holds them."""
    match action.resource:
        case "cluster" | "fleet":
            return model.clusters[action.id].tags
        case "security-group":
            [group] = [g for g in model.security_groups.values() if g.group_id == action.id]
            return group.tags
        case "instance":
            [instance] = [
                i for items in model.instances.values() for i in items if i.instance_id == action.id
            ]
            return instance.tags
        case "task-definition":
            [revision] = [
                r for rs in model.task_definitions.values() for r in rs if r.arn == action.id
            ]
            return revision.tags
        case "service":
            return model.services[(action.cluster, action.id)].tags
    raise AssertionError(action.resource)


@PROPERTY_SETTINGS
@given(
    history=st.lists(desired_states(), min_size=1, max_size=3),
    after=desired_states(),
    data=st.data(),
)
def test_applying_a_plan_then_planning_again_gives_an_empty_plan(
    history: list[DesiredState], after: DesiredState, data: st.DataObject
) -> None:
    model = empty_observed()
    for earlier in history:  # earlier specs, applied, with drift in between
        model = data.draw(drifted(converge(earlier, model)))

    first = plan_against(after, model)
    applied = apply_to_model(first, model)

    _assert_settled(after, applied)
    _assert_converged(after, applied)
    # Whatever happened, nothing we do not own was ever in a plan...
    created = {a.id for a in first.actions if (a.resource, a.verb) == ("cluster", "create")}
    for action in first.actions:
        if action.resource == "fleet" and action.id in created:
            continue  # recorded on the cluster this plan creates
        if action.verb in ("update", "replace", "delete"):
            assert is_managed(_live_tags(model, action)), action.sentence()
    # ... and no revision a surviving service runs was deregistered.
    deleted_services = {
        (a.cluster, a.id) for a in first.actions if (a.resource, a.verb) == ("service", "delete")
    }
    in_use = {
        service.task_definition
        for key, service in model.services.items()
        if key not in deleted_services and service.status == "ACTIVE"
    }
    for action in first.actions:
        if (action.resource, action.verb) == ("task-definition", "delete"):
            assert action.id not in in_use, action.sentence()


@PROPERTY_SETTINGS
@given(before=desired_states(), data=st.data())
def test_an_empty_folder_never_deletes(before: DesiredState, data: st.DataObject) -> None:
    model = data.draw(drifted(converge(before, empty_observed())))
    empty = desired_state(specs(), FACTS)

    assert all(action.verb != "delete" for action in plan_against(empty, model).actions)


@PROPERTY_SETTINGS
@given(spec_set=spec_sets())
def test_no_instance_is_given_more_neuron_cores_than_it_has(spec_set: SpecSet) -> None:
    desired = desired_state(spec_set, FACTS)
    model = converge(desired, empty_observed())

    for name, wanted in desired.clusters.items():
        shape = shape_of(wanted.fleet.instance_type)
        replicas = [
            Replica(cores=d.spec.neuronCores, host_ports=host_ports(d))
            for d in spec_set.deployments.values()
            if d.spec.cluster == name
            for _ in range(d.spec.replicas)
        ]
        placement = pack(replicas, shape)
        instances = [i for i in model.instances.get(name, ()) if i.alive]
        assert len(instances) == wanted.fleet.count
        assert all(sum(cores) <= shape.neuron_cores for cores in placement)
        if len(placement) > len(instances):
            assert any(f"cluster {name}:" in w for w in desired.warnings)
    for deployment_state in desired.deployments.values():
        shape = shape_of(desired.clusters[deployment_state.cluster].fleet.instance_type)
        [*containers] = deployment_state.task_definition.content["containerDefinitions"]
        for container in containers:
            for variable in container.get("environment", []):
                if variable["name"] == "NEURON_RT_NUM_CORES":
                    assert int(variable["value"]) <= shape.neuron_cores
            devices = container.get("linuxParameters", {}).get("devices", [])
            assert len(devices) <= shape.neuron_devices


@settings(max_examples=300, deadline=None)
@given(
    instance_type=st.sampled_from(INSTANCE_TYPES),
    data=st.data(),
)
def test_packing_never_overfills_an_instance(instance_type: str, data: st.DataObject) -> None:
    shape = shape_of(instance_type)
    replicas = data.draw(st.lists(st.integers(1, shape.neuron_cores), max_size=60))

    placement = pack(replicas, shape)

    assert all(sum(cores) <= shape.neuron_cores for cores in placement)
    assert Counter(c for cores in placement for c in cores) == Counter(replicas)
    lower_bound = -(-sum(replicas) // shape.neuron_cores)
    assert lower_bound <= len(placement) <= 2 * lower_bound + 1


@settings(max_examples=200, deadline=None)
@given(
    instance_type=st.sampled_from(INSTANCE_TYPES),
    data=st.data(),
)
def test_packing_never_puts_two_holders_of_a_host_port_on_one_instance(
    instance_type: str, data: st.DataObject
) -> None:
    shape = shape_of(instance_type)
    port_sets = [frozenset({8500, 8501}), frozenset({9000, 9001}), frozenset()]
    replicas = data.draw(
        st.lists(
            st.builds(
                Replica,
                cores=st.integers(1, shape.neuron_cores),
                host_ports=st.sampled_from(port_sets),
            ),
            max_size=30,
        )
    )

    placement = pack(replicas, shape)

    # Each port set can appear at most once per instance, so there are at least as many
    # instances as replicas holding the most common port set.
    holders = Counter(r.host_ports for r in replicas if r.host_ports)
    assert len(placement) >= max(holders.values(), default=0)
    assert all(sum(cores) <= shape.neuron_cores for cores in placement)
    assert sorted(c for cores in placement for c in cores) == sorted(r.cores for r in replicas)
