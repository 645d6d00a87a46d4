"""A Keras-style model summary: layer, output shape, parameters, totals."""
from __future__ import annotations

import torch
from torch import nn


def _shape(t: torch.Tensor) -> str:
    return "(None, " + ", ".join(str(d) for d in (t.shape[2:] + t.shape[1:2] if t.dim() == 4 else t.shape[1:])) + ")"


def count_parameters(model: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return {"trainable": trainable, "non_trainable": frozen + buffers, "total": trainable + frozen + buffers}


def summary(model: nn.Module, input_shape: tuple[int, int, int]) -> str:
    """Run one zero image through ``model`` and tabulate each leaf layer (HWC shapes, as Keras prints)."""
    rows: list[tuple[str, str, int]] = []
    hooks = []
    counts: dict[str, int] = {}

    def hook(module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        kind = type(module).__name__
        counts[kind] = counts.get(kind, 0) + 1
        params = sum(p.numel() for p in module.parameters(recurse=False))
        params += sum(b.numel() for n, b in module.named_buffers(recurse=False) if n != "num_batches_tracked")
        rows.append((f"{kind.lower()}_{counts[kind]} ({kind})", _shape(out), params))

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    h, w, c = input_shape
    device = next(model.parameters()).device
    with torch.no_grad():
        model(torch.zeros(1, c, h, w, device=device))
    model.train(was_training)
    for hd in hooks:
        hd.remove()
    width = max(len(r[0]) for r in rows) + 2
    line = "=" * (width + 40)
    out = [f'Model: "{type(model).__name__}"', line,
           f"{'Layer (type)':<{width}}{'Output Shape':<26}{'Param #':>14}", line]
    out += [f"{name:<{width}}{shape:<26}{params:>14,}" for name, shape, params in rows]
    totals = count_parameters(model)
    out += [line, f"Total params: {totals['total']:,}", f"Trainable params: {totals['trainable']:,}",
            f"Non-trainable params: {totals['non_trainable']:,}", line]
    return "\n".join(out)
