"""`python -m controller` is `ecs-infer`."""

from controller.cli import main

main()
