"""`rnnspec infer` around recurrent modules (language reference, section 10): the keys of
`nn.Linear`, `nn.Conv1d`, `nn.Conv2d`, `nn.BatchNorm1d/2d`, `nn.LayerNorm` and `nn.Embedding`
beside the recurrent modules of one parent module become the layer entries of one stack,
named after their modules, in an order consistent with the sizes (each entry reads what the
one before it gives), the checkpoint's key order (PyTorch's registration order) breaking ties.

What keys cannot tell (a convolution's stride, padding and dilation, a 2-D run's input bins,
an embedding's `padding_idx`, activations, dropout and pooling, which hold no tensors) is
written as a comment saying what to fill in, never as a fact.
"""

from __future__ import annotations

from rnnspec.language.diagnostics import Span
from rnnspec.language.names import check_name
from rnnspec.records import Record

_NOWHERE = Span("<checkpoint>", 1, 1, 1, 1)

_SEARCH_LIMIT = 20_000  # orderings tried before falling back to the key order


class LayerModule(Record):
    """A non-recurrent module of the checkpoint: `<parent><name>.<key>`."""

    parent: str
    name: str
    kinds: tuple[str, ...]  # what its keys may be, preferred first
    shapes: dict  # key -> shape
    dtype: str
    position: int  # of its first key in the checkpoint


class Entry(Record):
    """One written entry: a layer (`module` a LayerModule) or a recurrent `Module`."""

    kind: str
    module: object
    groups: int = 1
    merge_sum: bool = False


def _split(key: str) -> tuple[str, str, str] | None:
    """`encoder.fc.weight` -> (`encoder.`, `fc`, `weight`)."""
    module, dot, tensor = key.rpartition(".")
    if not dot or not module:
        return None
    parent, _, name = module.rpartition(".")
    return (parent + "." if parent else ""), name, tensor


def _kinds(shapes: dict) -> tuple[str, ...]:
    """The layer kinds these tensors may be, preferred first; () for none."""
    names = set(shapes)
    weight = shapes.get("weight")
    bias = shapes.get("bias")
    stats = {"running_mean", "running_var"}
    if stats <= names and names <= stats | {"weight", "bias", "num_batches_tracked"}:
        features = shapes["running_mean"]
        same = all(shapes[n] == features for n in names - {"num_batches_tracked"})
        if len(features) == 1 and same and shapes.get("num_batches_tracked", ()) == ():
            return ("batch_norm",)
        return ()
    if weight is None or not names <= {"weight", "bias"}:
        return ()
    if bias is not None and (len(bias) != 1 or bias[0] != weight[0]):
        return ()
    if len(weight) == 2:
        return ("linear",) if bias is not None else ("linear", "embedding")
    if len(weight) == 3:
        return ("conv1d",)
    if len(weight) == 4:
        return ("conv2d",)
    if len(weight) == 1:
        return ("layer_norm",)
    return ()


def layer_modules(tensors: dict, recurrent: set[str]) -> list[LayerModule]:
    """Every module whose keys are a layer's, in the checkpoint's order; the keys under a
    recurrent module's prefix are not looked at."""
    found: dict[tuple[str, str], dict] = {}
    first: dict[tuple[str, str], tuple[int, str]] = {}
    for position, (key, (shape, dtype)) in enumerate(tensors.items()):
        split = _split(key)
        if split is None or any(key.startswith(p) for p in recurrent if p):
            continue
        parent, name, tensor = split
        found.setdefault((parent, name), {})[tensor] = tuple(shape)
        first.setdefault((parent, name), (position, dtype))
    modules = []
    for (parent, name), shapes in found.items():
        kinds = _kinds(shapes)
        if kinds == ("linear", "embedding") and "emb" in name.lower():
            kinds = ("embedding", "linear")
        if kinds and check_name(name, _NOWHERE, "block") is None:
            position, dtype = first[(parent, name)]
            modules.append(LayerModule(parent, name, kinds, shapes, dtype, position))
    return modules


# ----------------------------------------------------------------------------- sizes
# What flows between entries: ("start",), ("any",), ("features", n) or ("map", channels)


def _recurrent_outputs(module) -> list[tuple[tuple, bool]]:
    """(what a recurrent module gives, merge = sum) in the order tried."""
    arguments = module.arguments
    size = arguments.get("proj_size") or arguments.get("hidden_size")
    if not isinstance(size, int) or module.cell not in ("rnn", "lstm", "gru"):
        return [(("any",), False)]
    if arguments.get("bidirectional"):
        return [(("features", 2 * size), False), (("features", size), True)]
    return [(("features", size), False)]


def _step(flow: tuple, entry_module, kind: str) -> list[tuple[tuple, Entry]]:
    """What `entry_module` read as `kind` gives after `flow`, each way it may ([] if none)."""
    state = flow[0]
    if kind == "recurrent":
        reads = entry_module.input_size
        if not _reads(flow, reads):
            return []
        return [(out, Entry("recurrent", entry_module, merge_sum=merge))
                for out, merge in _recurrent_outputs(entry_module)]
    shapes = entry_module.shapes
    if kind == "embedding":
        return [(("features", shapes["weight"][1]), Entry(kind, entry_module))] \
            if state == "start" else []
    if kind == "linear":
        rows, columns = shapes["weight"]
        return [(("features", rows), Entry(kind, entry_module))] if _reads(flow, columns) \
            else []
    if kind in ("batch_norm", "layer_norm"):
        features = (shapes.get("running_mean") or shapes["weight"])[0]
        if kind == "batch_norm" and state == "map" and flow[1] == features:
            return [(flow, Entry(kind, entry_module))]  # BatchNorm2d inside a 2-D run
        return [(("features", features), Entry(kind, entry_module))] \
            if _reads(flow, features) else []
    out, per_group = shapes["weight"][:2]
    if kind == "conv2d":
        channels = flow[1] if state == "map" else 1
        if state not in ("map", "start", "any", "features"):
            return []
        groups = _groups(channels, per_group, out)
        return [(("map", out), Entry(kind, entry_module, groups))] if groups else []
    # conv1d: features are channels
    if state in ("start", "any"):
        return [(("features", out), Entry(kind, entry_module))] if per_group else []
    if state == "map":
        return [(("features", out), Entry(kind, entry_module))] \
            if _reads(flow, per_group) else []
    groups = _groups(flow[1], per_group, out)
    return [(("features", out), Entry(kind, entry_module, groups))] if groups else []


def _groups(channels: int, per_group: int, out: int) -> int:
    if per_group < 1 or channels % per_group:
        return 0
    groups = channels // per_group
    return groups if out % groups == 0 else 0


def _reads(flow: tuple, features: int) -> bool:
    """Whether an entry reading `features` may follow `flow` (after a 2-D run: `C * F'`)."""
    state = flow[0]
    if state in ("start", "any"):
        return True
    if state == "map":
        return features % flow[1] == 0
    return flow[1] == features


def order_entries(recurrent: list[tuple[int, object]], layers: list[LayerModule]
                  ) -> list[Entry] | None:
    """The entries in the first order, by the checkpoint's key order, where each reads what
    the one before it gives; None when there is none (or the search gives up).
    `recurrent`: (position of its first key, `Module`)."""
    items = sorted([(position, "recurrent", m) for position, m in recurrent]
                   + [(m.position, "layer", m) for m in layers], key=lambda item: item[0])
    tried = 0

    def search(flow, left, chosen):
        nonlocal tried
        if not left:
            return chosen
        for index, (_, what, module) in enumerate(left):
            kinds = ("recurrent",) if what == "recurrent" else module.kinds
            for kind in kinds:
                for after, entry in _step(flow, module, kind):
                    tried += 1
                    if tried > _SEARCH_LIMIT:
                        return None
                    found = search(after, left[:index] + left[index + 1:], chosen + [entry])
                    if found is not None:
                        return found
        return None

    return search(("start",), items, [])
