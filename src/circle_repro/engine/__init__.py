"""mmengine glue: the model wrapper, registrations, runner config, training and evaluation entry points."""
