"""tsekit's built-in components. Each sub-package is one plugin unit, registered through the ``tsekit``
entry-point group exactly like a third-party package, using only tsekit's public API.

A unit is laid out like ``plugins/tsekit-example`` (see docs/plugins.md): ``<unit>/__init__.py`` declares
(configs, presets, capabilities, the hooks; torch-free, since every tsekit command imports it) and
``<unit>/modules.py`` implements (the torch code, imported only when a component is built). Torch-free
helpers may sit beside them (``ecapa/hyperparams.py``, ``core/commands.py``).

The ``<unit>_impl`` modules at this level are deprecated aliases of ``<unit>.modules``.
"""
