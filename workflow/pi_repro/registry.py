"""What the package's registries share (table kinds, evaluation tasks, extension methods): a class decorator that
refuses an entry that leaves out a member its base class requires, or takes a name twice, and keeps one instance
of it under its name. Imports nothing, so every registry can sit below the modules that dispatch to it."""
from __future__ import annotations


def registrar(registry: dict, base: type, what: str, guide: str, check=None):
    """``register(name)`` for ``registry``: a class decorator adding an instance of a subclass of ``base`` under
    ``name``. Refused (TypeError naming the members, ``guide`` saying where they are described): a member of
    ``base.REQUIRED`` defined by no class between the subclass and ``base``; then whatever ``check(name, cls)``
    raises; then a name already registered."""

    def register(name: str):
        def add(cls):
            missing = [a for a in base.REQUIRED
                       if not any(a in k.__dict__ for k in cls.__mro__ if k not in (base, object))]
            if missing:
                raise TypeError(f"{what} {name!r} ({cls.__name__}) does not define {', '.join(missing)} ({guide})")
            if check:
                check(name, cls)
            if name in registry:
                raise TypeError(f"{what} {name!r} is registered twice")
            cls.name = name
            registry[name] = cls()
            return cls

        return add

    return register
