"""The runner: controller-runtime's contract in asyncio, without AWS.

`settings` (every knob), `queueing` (the work queue), `watching` (the spec folder and the
resync), `reconciling` (the informer and `reconcile(key)`), `running` (workers and the one
place outcomes are counted), `reporting` (the `/status` document) and `daemon` (the loop
that ties them together). The AWS-backed shell and the prober are wired in by
`controller.daemon`, because only the AWS shell may import AWS's clients.
"""
