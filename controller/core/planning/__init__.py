"""Planning: the actions that bring AWS from the observed state to the desired state.

Owns: deciding what to create, update, replace or delete, in which order, and why
(`missing`, `spec change`, `drift`, `orphan`), with field-level diffs (from `diffs`) and
a typed payload per action (`payloads`) that says exactly what the shell writes;
refusing to touch what ecs-infer does not own (CONTRACT §5); and telling the shell which
task-definition families and revisions it must read (`families_to_read`,
`newest_to_read`, `revisions_to_read`). Must not: do I/O, or know
how an action is carried out (`controller.aws`).

Every action belongs to one work-queue key: `cluster/<name>` (the cluster, its security
group and its instances) or `deployment/<name>` (a task definition and a service).

    index        lookups built once per (desired, observed); keys; ownership
    building     KeyPlan: the one place an Action is made
    clusters     clusters and their security groups
    fleets       fleet sizing, launch attempts (market x subnet), launch groups
    disruption   which instances leave or are replaced, and in what order
    deployments  task-definition revisions and services
    pruning      removed deployments and clusters; the empty-folder guard
    ordering     PHASES: the order a plan applies in
    planner      the entry points below

How "drift" is told from "spec change": services and managed security groups carry the
hash of what was last applied (SPEC_HASH_TAG). Live differing while that hash equals
the current desired hash means someone changed AWS; a different hash means the spec
moved on. Clusters record the fleet size last applied (FLEET_SIZE_TAG): a fleet short
of it lost instances behind our back. Instances we terminate are tagged RETIRED_TAG
first, so that a terminated one without it names what was lost. Cluster tags use the
nearest honest answer, documented where it is decided.
"""

from controller.core.planning.deployments import NEW_REVISION, REVISIONS_KEPT
from controller.core.planning.index import cluster_key, deployment_key
from controller.core.planning.ordering import PHASES
from controller.core.planning.planner import (
    cluster_names,
    deployment_names,
    families_to_read,
    newest_to_read,
    plan,
    plan_cluster,
    plan_deployment,
    revisions_to_read,
)
from controller.core.planning.pruning import EMPTY_SPECS_WARNING

__all__ = [
    "EMPTY_SPECS_WARNING",
    "NEW_REVISION",
    "PHASES",
    "REVISIONS_KEPT",
    "cluster_key",
    "cluster_names",
    "deployment_key",
    "deployment_names",
    "families_to_read",
    "newest_to_read",
    "plan",
    "plan_cluster",
    "plan_deployment",
    "revisions_to_read",
]
