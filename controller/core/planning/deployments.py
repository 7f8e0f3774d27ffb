"""Deployments that are in the specs: their task-definition revisions and their service.

Owns: the revision a service should run (`revision_target`: the one recorded on the
service, else the newest managed revision of the same content, else a new one), which
revisions to register and which old ones to deregister (the newest few are kept for
rollbacks), how a registered revision is recognised when the shell re-reads
(`is_registered`), and the service's create / update, field by field from the one delta.
Must not: touch a service or cluster that is not ours (it warns instead), or plan what a
removed deployment loses (`pruning`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from controller.core.diffs import FieldChange, revision_delta, service_delta
from controller.core.payloads import (
    CreateService,
    DeregisterTaskDefinition,
    ExistingRevision,
    NewRevision,
    RegisterTaskDefinition,
    RevisionRef,
    UpdateService,
)
from controller.core.planning.building import KeyPlan
from controller.core.planning.index import (
    GONE_SERVICE,
    Index,
    foreign_cluster,
    is_foreign_service,
    live_service,
    reason_by_record,
    task_definition_recorded,
)
from controller.core.plans import Reason
from controller.core.states import (
    TASK_DEFINITION_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredDeployment,
    DesiredTaskDefinition,
    LiveService,
    LiveTaskDefinition,
    is_managed,
)

# Old managed revisions of a family kept for rollbacks; older ones are deregistered.
REVISIONS_KEPT = 3
# What a service's `taskDefinition` will read once this pass registers a new revision.
NEW_REVISION = "(new revision)"


def display(revision: RevisionRef) -> str:
    return revision.arn if isinstance(revision, ExistingRevision) else NEW_REVISION


def managed_revisions(revisions: Iterable[LiveTaskDefinition]) -> list[LiveTaskDefinition]:
    """ACTIVE managed revisions, oldest first by number, whatever order they were read in."""
    return sorted(
        (r for r in revisions if r.status == "ACTIVE" and is_managed(r.tags)),
        key=lambda r: r.revision,
    )


def revision_target(
    deployment: DesiredDeployment,
    service: LiveService | None,
    revisions: Sequence[LiveTaskDefinition],
) -> RevisionRef:
    """The revision the service should run."""
    if task_definition_recorded(deployment, service):
        assert service is not None  # by task_definition_recorded
        # In sync, or the service was pointed elsewhere: back to the revision we set.
        return ExistingRevision(arn=service.tags[TASK_DEFINITION_TAG])
    desired = deployment.task_definition
    # Same content, but for the fields others own (`ignore: [image]`).
    matching = [
        r
        for r in managed_revisions(revisions)
        if not revision_delta(desired, r, ignore=deployment.ignore)
    ]
    if matching:
        return ExistingRevision(arn=matching[-1].arn)
    return NewRevision(family=desired.family, content_hash=desired.content_hash)


def is_registered(revision: LiveTaskDefinition | None, new: NewRevision) -> bool:
    """Whether a revision the shell re-reads is the one `new` asks for: ours, ACTIVE, of
    the family, with the content hash (a crashed pass may have registered it)."""
    return (
        revision is not None
        and revision.family == new.family
        and revision.status == "ACTIVE"
        and is_managed(revision.tags)
        and revision.tags.get(TASK_DEFINITION_HASH_TAG) == new.content_hash
    )


def deregister(
    out: KeyPlan, revision: LiveTaskDefinition, *, cluster: str, deployment: str
) -> None:
    out.add(
        "delete",
        "task-definition",
        revision.arn,
        reason="orphan",
        cluster=cluster,
        deployment=deployment,
        payload=DeregisterTaskDefinition(arn=revision.arn),
    )


def plan_task_definition(
    out: KeyPlan, deployment: DesiredDeployment, service: LiveService | None, index: Index
) -> RevisionRef:
    desired = deployment.task_definition
    if task_definition_recorded(deployment, service):
        return revision_target(deployment, service, ())
    ours = managed_revisions(index.observed.task_definitions.get(desired.family, ()))
    target = revision_target(deployment, service, ours)
    if isinstance(target, NewRevision):
        recorded = service.tags.get(TASK_DEFINITION_HASH_TAG) if service is not None else None
        out.add(
            "create",
            "task-definition",
            desired.family,
            reason="spec change" if recorded else "missing",
            cluster=deployment.cluster,
            deployment=deployment.name,
            payload=RegisterTaskDefinition(desired=to_register(deployment, service, index)),
        )
    # Keep the newest few for rollbacks (a revision registered now is one of them, so
    # that the next pass finds nothing more to do), and whatever is or was last set on
    # the service.
    new = isinstance(target, NewRevision)
    newest = REVISIONS_KEPT - (1 if new else 0)
    in_use = {target.arn} if isinstance(target, ExistingRevision) else set()
    if service is not None:
        in_use |= {service.task_definition, service.tags.get(TASK_DEFINITION_TAG) or ""}
    keep = {r.arn for r in ours[len(ours) - newest :]} | {arn for arn in in_use if arn}
    for revision in ours:
        if revision.arn not in keep and revision.arn not in index.revisions_in_use:
            deregister(out, revision, cluster=deployment.cluster, deployment=deployment.name)
    return target


def live_image(
    deployment: DesiredDeployment, service: LiveService | None, index: Index
) -> str | None:
    """The model's image the service runs now (read from its revision), if known."""
    if service is None:
        return None
    revision = index.observed.revision(service.task_definition)
    if revision is None:
        return None
    for container in revision.content.get("containerDefinitions", ()):
        if container.get("name") == deployment.probe.model_name and container.get("image"):
            return str(container["image"])
    return None


def to_register(
    deployment: DesiredDeployment, service: LiveService | None, index: Index
) -> DesiredTaskDefinition:
    """The revision to register: the spec's content, but under `ignore: [image]` with the
    image the service runs now (a CI pipeline's), so a spec change never undoes it."""
    desired = deployment.task_definition
    image = live_image(deployment, service, index) if deployment.ignores_image else None
    if image is None:
        return desired
    containers = [
        {**c, "image": image} if c.get("name") == deployment.probe.model_name else c
        for c in desired.content.get("containerDefinitions", ())
    ]
    return dataclasses.replace(
        desired, content={**desired.content, "containerDefinitions": containers}
    )


def plan_family_drift(
    out: KeyPlan,
    deployment: DesiredDeployment,
    service: LiveService | None,
    target: RevisionRef,
    index: Index,
) -> None:
    """A revision registered out of band in the family (the newest is neither ours nor of
    the spec's content): drift. It is not ours to deregister (CONTRACT §5); the
    correction registers the spec's content again, so that the family's newest revision
    (what `update-service --task-definition <family>` takes) is the spec's."""
    if isinstance(target, NewRevision):
        return  # this plan registers the spec's content anyway
    desired = deployment.task_definition
    newest_arn = index.observed.newest_revisions.get(desired.family)
    recorded = service.tags.get(TASK_DEFINITION_TAG) if service is not None else None
    if newest_arn is None or newest_arn in (recorded, target.arn):
        return
    newest = index.observed.revision(newest_arn)
    if newest is None or (
        is_managed(newest.tags)
        and newest.tags.get(TASK_DEFINITION_HASH_TAG) == desired.content_hash
    ):
        return
    register = to_register(deployment, service, index)
    changes = revision_delta(register, newest, ignore=deployment.ignore)
    if not changes:
        return
    out.add(
        "replace",
        "task-definition",
        newest.arn,
        reason="drift",
        cluster=deployment.cluster,
        deployment=deployment.name,
        payload=RegisterTaskDefinition(desired=register),
        fields=changes.changes,
        detect_only=deployment.drift_policy == "detect",
    )


def accepted_revision(
    deployment: DesiredDeployment, service: LiveService, index: Index
) -> str | None:
    """Under `ignore: [image]`, the revision the service runs when it is not the one we
    set but differs from the spec only in what is ignored (a CI pipeline deployed it)."""
    if not deployment.ignores_image:
        return None
    running = index.observed.revision(service.task_definition)
    if running is None or running.family != deployment.task_definition.family:
        return None
    if revision_delta(deployment.task_definition, running, ignore=deployment.ignore):
        return None
    return running.arn


def plan_service(
    out: KeyPlan,
    deployment: DesiredDeployment,
    service: LiveService | None,
    target: RevisionRef,
    index: Index,
) -> None:
    desired = deployment.service
    detect = deployment.drift_policy == "detect"
    if service is None or service.status in GONE_SERVICE:
        # Ours and deleted behind our back is drift; never seen before is missing.
        reason: Reason = "drift" if service is not None and is_managed(service.tags) else "missing"
        out.add(
            "create",
            "service",
            desired.name,
            reason=reason,
            cluster=desired.cluster,
            deployment=deployment.name,
            payload=CreateService(desired=desired, revision=target),
            fields=(
                *(
                    (FieldChange("status", service.status, "ACTIVE"),)
                    if service is not None and reason == "drift"
                    else ()
                ),
                FieldChange("desiredCount", None, desired.desired_count),
                FieldChange("taskDefinition", None, display(target)),
            ),
            detect_only=detect,
        )
        return
    revision, record = display(target), None
    accepted = accepted_revision(deployment, service, index)
    if accepted is not None and isinstance(target, ExistingRevision):
        # Kept as it runs; the revision we recorded stays recorded (and kept).
        revision, record = accepted, target.arn
    changes = service_delta(
        desired, service, revision=revision, record=record, ignore=deployment.ignore
    )
    if not changes:
        return
    out.add(
        "update",
        "service",
        desired.name,
        reason=reason_by_record(service.tags, desired.spec_hash),
        cluster=desired.cluster,
        deployment=deployment.name,
        payload=UpdateService(
            desired=desired,
            revision=target,
            desired_count=desired.desired_count if changes.touches("desiredCount") else None,
            set_task_definition=changes.touches("taskDefinition"),
            placement_constraints=(
                desired.placement_constraints if changes.touches("placementConstraints") else None
            ),
            placement_strategy=(
                desired.placement_strategy if changes.touches("placementStrategy") else None
            ),
            deployment_configuration=(
                desired.deployment_configuration
                if changes.touches_below("deploymentConfiguration")
                else None
            ),
            tags={k: v for k, v in changes.tags().items() if k != TASK_DEFINITION_TAG},
            record_revision=changes.touches(f"tags.{TASK_DEFINITION_TAG}"),
        ),
        fields=changes.readable(),
        detect_only=detect,
    )


def plan_desired_deployment(out: KeyPlan, deployment: DesiredDeployment, index: Index) -> bool:
    """False when nothing may be planned for it (a cluster or service not ours)."""
    name = deployment.name
    if foreign_cluster(index.observed, deployment.cluster) is not None:
        out.warnings.append(
            f"deployment {name}: cluster {deployment.cluster} is not managed by ecs-infer: "
            "nothing is planned"
        )
        return False
    service = live_service(index.observed, deployment)
    if service is not None and is_foreign_service(service):
        out.warnings.append(
            f"service {service.name} in cluster {service.cluster} exists and is not managed "
            f"by ecs-infer: nothing is planned for deployment {name}"
        )
        return False
    target = plan_task_definition(out, deployment, service, index)
    plan_family_drift(out, deployment, service, target, index)
    plan_service(out, deployment, service, target, index)
    return True


def families_of_desired(index: Index) -> set[str]:
    """The families whose revisions must be read to plan the desired deployments: none
    for a deployment whose service records the desired content and the revision set."""
    families: set[str] = set()
    for deployment in index.desired.deployments.values():
        if foreign_cluster(index.observed, deployment.cluster) is not None:
            continue
        service = live_service(index.observed, deployment)
        if is_foreign_service(service):
            continue
        if not task_definition_recorded(deployment, service):
            families.add(deployment.task_definition.family)
    return families


def _ours(index: Index) -> Iterable[tuple[DesiredDeployment, LiveService | None]]:
    """The desired deployments that may be planned, with their live service."""
    for deployment in index.desired.deployments.values():
        if foreign_cluster(index.observed, deployment.cluster) is not None:
            continue
        service = live_service(index.observed, deployment)
        if not is_foreign_service(service):
            yield deployment, service


def families_to_check(index: Index) -> set[str]:
    """The families whose newest revision is read on every full read: a revision
    registered out of band is drift (`plan_family_drift`)."""
    return {deployment.task_definition.family for deployment, _ in _ours(index)}


def revisions_to_describe(index: Index) -> set[str]:
    """Revisions to read one by one: a family's newest when it is not the one recorded
    on the service, and the one a service runs when it is not the one we set."""
    arns: set[str] = set()
    for deployment, service in _ours(index):
        recorded = service.tags.get(TASK_DEFINITION_TAG) if service is not None else None
        newest = index.observed.newest_revisions.get(deployment.task_definition.family)
        if newest is not None and newest != recorded:
            arns.add(newest)
        if service is not None and service.task_definition and service.task_definition != recorded:
            arns.add(service.task_definition)
    return {arn for arn in arns if index.observed.revision(arn) is None}
