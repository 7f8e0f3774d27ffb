"""The emulated ECS data plane of the sandbox: the scheduler and agents moto does not have.

Owns: acting on moto's in-process ECS and EC2 backends as ECS would, and running one
model server (`modelserver`) per running task. Must not: listen on, or send to, anything
but loopback addresses; know more than AWS knows (it sees the controller's work only
through the AWS API, as ECS does); be imported by the controller (the controller reaches
it through the API only, like on AWS).

One concern per module, each saying what it owns:

- `dataplane`: `DataPlane`, the facade the sandbox and tests start; its settings, the
  tick, the model servers;
- `backends`: typed views (Protocols) of moto's ECS and EC2 objects; reaching them;
- `patches`: moto's ECS API behaving more like ECS while a data plane runs;
- `agents`: instance addresses on loopback; container agents joining and leaving clusters;
- `tasks`: the lifecycle of tasks (stop, RUNNING, settle, forget) and the counts from them;
- `scheduler`: the service scheduler: desiredCount, deployments, rollouts, events;
- `placement`: where a new task goes (constraints, CPU, memory, ports, NeuronCores), and
  starting it there;
- `expressions`: the cluster query language of `memberOf` (pure);
- `faults`: the `sandbox:delay` / `sandbox:fail` / `sandbox:crash` task tags and the
  `sandbox:interrupt` instance tag (a spot interruption);
- `endpoints`: what each live task serves (address, port, model, faults);
- `notifications`: ECS's and EC2's events about the account (task, container instance
  and instance state changes, service actions, deployments, spot warnings), emitted
  through `controller.sandbox.events` into moto's EventBridge.

Every tick (0.25 s by default) runs every concern in turn holding the emulator's
`BACKEND_LOCK`, then the model servers are made to match the endpoints; the tick ends
with the notifications' look at what changed (as does marking tasks started or failed).

One data plane per process (moto's backends are process-wide). Gaps: no `awsvpc` ENIs,
no placement strategies other than spread, no capacity providers, no deployment circuit
breaker (rolloutState never FAILED, so no SERVICE_DEPLOYMENT_FAILED event), no REST API,
health checks or load balancers, FARGATE services are placed on instances like EC2 ones,
one account and region.
"""
