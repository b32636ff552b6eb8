"""tsekit-example: a template third-party tsekit plugin.

It adds the ``mfcc-mean`` speaker encoder and the ``gate`` fusion. The plugin module
(:mod:`tsekit_example.plugin`) is torch-free; the torch code lives in :mod:`tsekit_example.modules`
and is imported only when a component is built.
"""

__version__ = "0.1.0"
