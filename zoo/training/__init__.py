"""Training: the experiment a recipe builds trained in its run directory, the jitted step
and the loop, checkpoints, inputs, devices. Imports the core, never evaluation, web or cli."""
