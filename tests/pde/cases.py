"""Small PDE problems shared by the tests here."""

import jax.numpy as jnp

from bayestensor.pde.problems import Problem, laplacian


def exact_2d(x, y):
    """A smooth exact solution on a 2-D box."""
    return jnp.sin(x) * jnp.cos(2 * y)


def problem_2d(grid=(5, 6), operator=laplacian):
    """The manufactured problem of :func:`exact_2d` on ``[0, 1] × [-0.5, 0.7]``."""
    return Problem.manufactured(operator, exact_2d, [(0.0, 1.0), (-0.5, 0.7)], grid)
