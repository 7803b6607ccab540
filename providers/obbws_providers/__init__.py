"""Provider modules of obbws-jupyter: one module (or folder) per data provider.

Each module is sans-I/O: it imports only the standard library and ``obbws_jupyter.protocol``,
and exposes ``PROVIDER``, a :class:`obbws_jupyter.protocol.ProviderSpec` registered under the
entry-point group ``obbws_jupyter.providers`` (see ``pyproject.toml``). The core never imports a
provider by name.

- ``demo``: the simulated market served on 127.0.0.1 (``docs/demo_protocol.md``).
- ``replay``: replays a capture file recorded from any provider.
"""
