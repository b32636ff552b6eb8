"""tsekit's built-in components. Each module here is a plugin registered through the ``tsekit``
entry-point group, exactly like a third-party package, using only tsekit's public API.
Registration modules stay torch-free; implementations live in ``*_impl`` modules."""
