"""Control for many requests on many engines: request classes, the fluid LP, capacity."""
